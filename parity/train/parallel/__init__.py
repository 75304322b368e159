"""Data-parallel training on each framework's own engine (torch DDP, MirroredStrategy, Keras on
JAX): check.py proves a few steps equal to the single process they stand for (observe.py: what
the engine did; expect.py: what the single process says), runs.py trains side by side with 1
and N replicas; engines.py reaches the engines, child.py runs the ones that need a fresh
interpreter."""
