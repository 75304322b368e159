"""cnn-parity: one network, three frameworks, proven equal number by number.

    import parity
    model = parity.build("resnet50", framework="keras")
    parity.load_state_dict(model, parity.state_dict(parity.build("resnet50")))
    report = parity.check("resnet50")

No framework is imported until a model of that framework is built or handed in. From
`import parity` on, the first `import tensorflow` loads torch and triton before it (they
abort the process if loaded after TensorFlow): see parity/frameworks.py.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import frameworks
from .catalogue import registry
from .errors import InputError, ParityError, StateDictError, WeightFileError
from .io import load_state, save_state
from . import weights  # parity.weights.from_keras_applications, importable without a framework

frameworks.guard_import_order()

def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cnn-parity")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


if TYPE_CHECKING:
    from .inference.check import ModelReport
    from .inference.layerwise import Comparison
    from .adapters.step import TrainResult

Model = Any  # a torch nn.Module, a keras.Model or a tf.Module of the catalogue
State = dict[str, np.ndarray]  # canonical state: torch-style key -> array in PyTorch layout

__version__ = _installed_version()  # pyproject.toml's version: the one source
__all__ = ["build", "state_dict", "load_state_dict", "check", "run", "export_onnx", "save_state",
           "load_state", "list_models", "register_model", "registry", "ParityError", "StateDictError", "WeightFileError",
           "InputError", "compare", "weights", "train_steps"]


def build(name: str, framework: str = "torch", **kwargs: Any) -> Model:
    """A catalogue model in one framework: torch nn.Module, keras.Model or tf.Module."""
    from .adapters import adapter
    return adapter(framework).build(name, **kwargs)


def state_dict(model: Model) -> State:
    """Canonical state: {torch-style key: numpy array in PyTorch layout}, for any framework's model."""
    from .adapters import adapter_for
    return adapter_for(model).state_dict(model)


def load_state_dict(model: Model, state: State, strict: bool = True) -> None:
    """Load canonical state into a model of any framework; raises StateDictError listing bad keys."""
    from .adapters import adapter_for
    adapter_for(model).load_state_dict(model, state, strict=strict)


def run(model: Model, x_nchw: np.ndarray) -> list[np.ndarray]:
    """Run a model of any framework on an NCHW float32 numpy batch; returns a list of outputs."""
    from .adapters import adapter_for
    return adapter_for(model).run(model, x_nchw)


def export_onnx(model: Model, path: str | os.PathLike, input_shape: tuple[int, int, int, int]) -> None:
    """Export to ONNX: input `input` (N, C, H, W) with dynamic N, outputs named as catalogued."""
    from .adapters import adapter_for
    a = adapter_for(model)
    spec = a.spec(model)
    a.export_onnx(model, path, tuple(input_shape), spec.outputs if spec else ("logits",))


def check(name: str, **kwargs: Any) -> ModelReport:
    """Compare every target against the torch_impl reference; see parity.check.check."""
    from .inference.check import check as _check
    return _check(name, **kwargs)


def compare(reference: Model, candidate: Model, inputs: np.ndarray, *, tolerance: float | None = None,
            layerwise: bool | None = None) -> Comparison:
    """Compare two models of any frameworks on NCHW `inputs`, down to the first divergent
    layer; see parity.inference.layerwise.compare and docs/diagnostics.md."""
    from .inference.layerwise import compare as _compare
    return _compare(reference, candidate, inputs, tolerance=tolerance, layerwise=layerwise)


def train_steps(model: Model, batches: Iterable[tuple[np.ndarray, np.ndarray]], **hyper: Any) -> TrainResult:
    """One training step per (x_nchw, labels) batch in any framework, with torch.optim's meaning;
    returns losses, first-step gradients and the final canonical state (see parity.adapters.step)."""
    from .train.loop import train_steps as _train_steps
    return _train_steps(model, batches, **hyper)


# Submodules the docs call as parity.X.Y: imported on first use, so `import parity` stays light.
_LAZY_SUBMODULES = {"bench", "devices", "train", "training", "train_check", "inference", "tolerance", "layerwise",
                    "calibrate", "onnx", "catalogue", "report", "io", "layouts", "inputs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'parity' has no attribute {name!r}")


def list_models(family: str | None = None) -> list[str]:
    return registry.names(family)


register_model = registry.register_model  # a model that lives anywhere: see docs/own-model.md
