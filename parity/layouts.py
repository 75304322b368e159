"""Weight layout conversions between the canonical (PyTorch) layout and TF/Keras layouts.

Pure transposes and reshapes, so a round trip is bit-identical.
"""
import numpy as np

# kind -> (native -> canonical, canonical -> native)
_CONV = (lambda w: w.transpose(3, 2, 0, 1), lambda w: w.transpose(2, 3, 1, 0))  # (kH,kW,I,O) <-> (O,I,kH,kW)
_LINEAR = (lambda w: w.T, lambda w: w.T)  # (in, out) <-> (out, in)
_IDENTITY = (lambda w: w, lambda w: w)

LAYOUTS = {
    "conv": _CONV,
    "conv_transpose": _CONV,  # (kH,kW,O/g,I) <-> (I,O/g,kH,kW): the same axis permutation
    "linear": _LINEAR,
    "identity": _IDENTITY,
}


def canonical_shape(kind: str, native_shape: tuple) -> tuple:
    """The canonical shape of a native weight, without touching its data."""
    return LAYOUTS[kind][0](np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), native_shape,
                                                           (0,) * len(native_shape))).shape


def to_canonical(kind: str, array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(LAYOUTS[kind][0](array))


def from_canonical(kind: str, array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(LAYOUTS[kind][1](array))


def flatten_linear_to_canonical(native: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Native (H*W*C, out) Linear weight -> canonical (out, C*H*W)."""
    c, h, w = chw
    out = native.shape[1]
    return np.ascontiguousarray(native.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w))


def flatten_linear_from_canonical(canonical: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Canonical (out, C*H*W) Linear weight -> native (H*W*C, out)."""
    c, h, w = chw
    out = canonical.shape[0]
    return np.ascontiguousarray(canonical.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out))
