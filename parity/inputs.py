"""Input sizes a model can take, found before any real work (and before a raw shape error).

A Linear that follows a spatial flatten fixes the feature map it reads (LeNet: 16x5x5 from
a 1x28x28 input) unless adaptive pooling sits before it. Rather than keep a table of valid
sizes per model, run torch_impl's forward on the meta device: shapes only, no memory, no
arithmetic, a few milliseconds.
"""
import functools

from .catalogue import registry
from .errors import InputError

# what torch says when a Linear gets a flattened map of the wrong length
_SHAPE_MESSAGES = ("must have same reduction dim", "cannot be multiplied", "size mismatch")


def unfit_size(name: str, input_size) -> str | None:
    """Why model `name` cannot take one (C, H, W) input, or None (also when torch is absent)."""
    spec = registry.find(name)
    if spec is None or not spec.flatten_linear:
        return None
    return _probe(name, tuple(int(v) for v in input_size))


def refuse_unfit_size(name: str, input_size) -> None:
    problem = unfit_size(name, input_size)
    if problem:
        raise InputError(problem)


@functools.lru_cache(maxsize=64)
def _probe(name, input_size):
    from . import frameworks
    if frameworks.missing("torch"):
        return None
    torch = frameworks.import_safely("torch")
    spec = registry.get(name)
    c, h, w = input_size
    try:
        with torch.device("meta"):
            registry.builder(spec, "torch")(**spec.kwargs).eval()(torch.empty(1, c, h, w))
    except (RuntimeError, ValueError) as exc:  # ValueError: a channel count the default build refuses
        if not any(m in str(exc) for m in _SHAPE_MESSAGES):
            return None  # not a size problem (or an op the meta device lacks): let the real run decide
        want = "x".join(map(str, spec.input_size))
        return (f"{name}: takes a {want} input (its classifier reads a fixed-size flattened map); "
                f"got {c}x{h}x{w}")
    return None
