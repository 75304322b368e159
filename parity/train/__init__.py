"""Training, proven the same in torch, Keras and TF.

The step interface every adapter's trainer speaks (Hyper, Trainer, dropout masks) is
parity/adapters/step.py, below this package.

loop.py       train_steps: one step per batch through a model's adapter
judge.py      the train-check judge: policies, normalized errors, likely causes, batches
check.py      `parity train-check`: one run per framework against torch in float64
parallel/     data-parallel: each framework's engine against the single process it stands
              for (check.py), and data-parallel training runs (runs.py)
runs.py       `parity train` and `finetune`: short runs side by side (loop, checkpoints, curves)
finetune.py, predict.py, data.py   a pretrained start, top-k predictions, one image loader
commands.py   the command line of all of them (`--replicas` is chosen there)

Nothing here imports a framework at import time.
"""
