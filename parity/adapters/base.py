"""The one small interface every framework adapter implements.

An adapter sees a model as a set of named slots: canonical key -> (canonical shape,
read, write). State transfer, strict checking and lossless round trips are written once,
here; the adapters only say where each weight lives and in which layout.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import layouts
from ..catalogue import registry
from ..errors import InputError, StateDictError
from .step import DropoutMasks, Trainer, loss_kind

REGISTERED_NAME = "parity_name"  # the attribute build() tags a registered model with
DTYPES = ("float32", "float64")  # what every implementation builds and trains in


def check_dtype(dtype: str) -> str:
    """`dtype` if it is one of DTYPES, else the one-line error every command reports (exit 2)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
    return dtype


@dataclass
class Slot:
    shape: tuple
    read: Callable[[], np.ndarray]  # -> canonical array
    write: Callable[[np.ndarray], None]  # canonical array ->
    variable: object = None  # the native variable (training maps its gradient back by identity)
    to_canonical: Callable[[np.ndarray], np.ndarray] = None  # native-layout array -> canonical
    from_canonical: Callable[[np.ndarray], np.ndarray] = None  # canonical array -> native layout

    def native(self, array):
        return self.from_canonical(array) if self.from_canonical else np.asarray(array)

    def canonical(self, array):
        return self.to_canonical(array) if self.to_canonical else np.asarray(array)


def variable_slot(variable, kind: str, to_numpy, flatten_chw=None) -> Slot:
    """The Slot of a native (Keras or TF) variable stored in layout `kind` (parity/layouts.py);
    `to_numpy` reads it. `flatten_chw`: a Linear after a spatial flatten of a (C, H, W) map,
    whose input features the NHWC frameworks order (H, W, C)."""
    if flatten_chw is not None:
        to_canonical = lambda array: layouts.flatten_linear_to_canonical(array, flatten_chw)  # noqa: E731
        from_canonical = lambda array: layouts.flatten_linear_from_canonical(array, flatten_chw)  # noqa: E731
        n_in, n_out = variable.shape
        shape = (n_out, n_in)
    else:
        to_canonical = lambda array: layouts.to_canonical(kind, array)  # noqa: E731
        from_canonical = lambda array: layouts.from_canonical(kind, array)  # noqa: E731
        shape = layouts.canonical_shape(kind, tuple(variable.shape))
    return Slot(shape, lambda: to_canonical(to_numpy(variable)), lambda value: variable.assign(from_canonical(value)),
                variable=variable, to_canonical=to_canonical, from_canonical=from_canonical)


class Adapter:
    """The complete contract: every method the core (check, transfer, bench, training) calls.
    Each framework implements the first group, with these signatures; the rest is written once."""
    framework: str = ""
    channels_last: bool = False  # the framework's native image layout is NHWC

    # --- what each framework provides -------------------------------------------------
    def owns(self, model) -> bool:
        """Whether `model` is one of this framework's models."""
        raise NotImplementedError

    def model_name(self, model) -> str:
        """The catalogue name the model was built as (a registered model's builder may name it
        otherwise: build() tags it)."""
        return getattr(model, REGISTERED_NAME, None) or self.native_name(model)

    def native_name(self, model) -> str:
        """The name the framework's model carries."""
        raise NotImplementedError

    def slots(self, model) -> dict[str, Slot]:
        """Canonical key -> Slot for every weight and buffer (num_batches_tracked excluded)."""
        raise NotImplementedError

    def run(self, model, x_nchw: np.ndarray, device: str = "cpu") -> list[np.ndarray]:
        """Inference-mode outputs in the catalogue's output order, NCHW for feature maps."""
        raise NotImplementedError

    def layer_outputs(self, model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """{layer path: output (NCHW)} for every layer holding weights, in execution order."""
        raise NotImplementedError

    def layer_dtypes(self, model, x_nchw: np.ndarray) -> list[tuple[str, str, str | None]]:
        """[(layer path, input dtype, output dtype)] for every layer holding weights, in execution
        order. A run that breaks ends the list at the layer that broke (its output None)."""
        raise NotImplementedError

    def export_onnx(self, model, path, input_shape, output_names=("logits",)) -> None:
        """ONNX with input `input` (N, C, H, W), dynamic N, outputs named `output_names`."""
        raise NotImplementedError

    def save_native(self, model, path) -> None:
        raise NotImplementedError

    def load_native(self, model, path) -> None:
        raise NotImplementedError

    def native_trainer(self, model, **options):
        """The framework's own Trainer (<framework>_impl/train.py) built with `options`
        (Hyper.native() plus loss, aux_weights, head, dropout_masks, device)."""
        raise NotImplementedError

    def building_in(self, dtype: str):
        """A context in which the framework's builders make `dtype` models (Keras: floatx)."""
        import contextlib
        return contextlib.nullcontext()

    def cast(self, model, dtype: str):
        """The model with its variables in `dtype` (torch: .to(), tf_impl: to_dtype)."""
        return model

    def dtype(self, model) -> str:
        """"float32" or "float64": the dtype the model's variables (and inputs) are in."""
        raise NotImplementedError

    # --- written once ---------------------------------------------------------------
    def build(self, name: str, input_size=None, dtype: str = "float32", **kwargs):
        """`input_size` (C, H, W) matters only where a graph needs static sizes (Keras);
        `dtype` float64 builds the same network with float64 variables and arithmetic."""
        spec = registry.get(name)
        with self.building_in(check_dtype(dtype)):
            made = registry.builder(spec, self.framework)
            if spec.module:
                model = made(**{**spec.kwargs, **kwargs})
            else:
                model = self.built_by_user(spec, made, kwargs)
        return self.cast(model, dtype) if dtype != "float32" else model

    def built_by_user(self, spec, made, kwargs):
        """A registered model's builder called, its failure named, its model checked and tagged."""
        try:
            model = made(**{**spec.kwargs, **kwargs})
        except Exception as exc:
            raise InputError(f"{spec.name}: its {self.framework} builder raised {type(exc).__name__}: {exc}") from None
        if not self.owns(model):
            raise InputError(f"{spec.name}: its {self.framework} builder returned a {type(model).__name__}, "
                             f"not a {self.framework} model")
        setattr(model, REGISTERED_NAME, spec.name)
        return model

    def copy_in(self, model, dtype: str, input_size=None):
        """A new model computing what `model` does, in `dtype`: rebuilt from its registration,
        holding its weights (torch's is a deep copy, cast). `model` is left as it is."""
        spec = self.spec(model)
        if spec is None:
            raise ValueError(f"{self.model_name(model)}: not a registered model; a {self.framework} model is "
                             f"rebuilt from its registration to change its dtype (give a torch model instead)")
        copied = self.build(spec.name, input_size=input_size, dtype=dtype)
        self.load_state_dict(copied, self.state_dict(model))
        return copied

    def spec(self, model):
        return registry.find(self.model_name(model))

    def canonical_paths(self, model, spec=None):
        """native layer path -> torch module path: the registered `rename` of a model of one's own."""
        spec = spec or self.spec(model)
        return (lambda path: spec.canonical_path(self.framework, path)) if spec and spec.rename else (lambda path: path)

    def float64_rounding(self, model) -> str | None:
        """Why a float64 model of this framework may compute in float32 where its port does not
        (a known trap of the framework, named by layer), or None."""
        return None

    def distributed_engine(self):
        """<framework>_impl/distributed.py: the framework's data-parallel engine (the functions
        docs/distributed.md sets side by side)."""
        return self._implementation("distributed")

    def layer_types(self):
        """<framework>_impl/layers.py: the framework's own layer classes and helpers (the
        self-test plants its bugs by replacing or wrapping them)."""
        return self._implementation("layers")

    def _implementation(self, module: str):
        import importlib

        from ..frameworks import import_safely
        import_safely(self.framework)  # torch and triton before TensorFlow: parity/frameworks.py
        return importlib.import_module(f"{self.framework}_impl.{module}")

    def trainer(self, model, hyper, device: str = "cpu", dropout_seed=None):
        """A parity.adapters.step.Trainer for `model` with `hyper` (torch vocabulary): one step per
        call in train mode, the catalogue's loss, aux weights and head (when freezing)."""
        spec = self.spec(model)
        head = None
        if hyper.freeze == "backbone":
            if not (spec and spec.head):
                raise ValueError(f"{self.model_name(model)}: the catalogue declares no head to keep trainable")
            head = tuple(spec.head)
        masks = DropoutMasks(dropout_seed) if dropout_seed is not None else None
        native = self.native_trainer(
            model, **hyper.native(), loss=loss_kind(spec), aux_weights=tuple(spec.aux_weights) if spec else (),
            head=head, device=device,
            dropout_masks=masks.for_layout(self.channels_last, spec.flatten_linear.values() if spec else ())
            if masks else None)
        by_variable = {id(slot.variable): (key, slot) for key, slot in self.slots(model).items()
                       if slot.variable is not None}
        return Trainer(native, [by_variable[id(v)] for v in native.variables], framework=self.framework,
                       device=device, channels_last=self.channels_last, masks=masks, dtype=self.dtype(model))

    def state_dict(self, model) -> dict[str, np.ndarray]:
        return {key: slot.read() for key, slot in self.slots(model).items()}

    def load_state_dict(self, model, state: dict, strict: bool = True) -> None:
        slots = self.slots(model)
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        mismatched = [(k, slots[k].shape, np.shape(v)) for k, v in state.items()
                      if k in slots and tuple(slots[k].shape) != tuple(np.shape(v))]
        missing = [k for k in slots if k not in state]
        unexpected = [k for k in state if k not in slots]
        if mismatched or (strict and (missing or unexpected)):
            raise StateDictError(self.model_name(model), missing if strict else (),
                                 unexpected if strict else (), mismatched)
        dtype = np.dtype(self.dtype(model))  # float32 state into a float64 model: cast exactly
        for key, value in state.items():
            if key in slots:
                slots[key].write(np.asarray(value, dtype=dtype))

    def input_channels(self, model) -> int | None:
        """The channels this model was built for (`in_channels=1` for a 1-channel NiN), where it says."""
        return getattr(model, "in_channels", None)

    def check_input(self, model, x: np.ndarray) -> np.ndarray:
        """`x` in the model's dtype (a float32 batch widens exactly into a float64 model), or the
        same clear error in every framework for an input the model cannot take."""
        name = self.model_name(model)
        spec = registry.find(name)
        channels = self.input_channels(model) or (spec.input_size[0] if spec else None)
        if not isinstance(x, np.ndarray):
            raise InputError(f"{name}: expected a numpy array in NCHW layout; got {type(x).__name__}")
        if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
            want = f"(N, {channels if channels is not None else 'C'}, H, W)"
            raise InputError(f"{name}: expected input {want} (NCHW); got shape {x.shape}")
        if x.shape[0] == 0:
            raise InputError(f"{name}: got an empty batch, shape {x.shape}")
        dtype = self.dtype(model)
        if x.dtype != np.dtype(dtype) and not (x.dtype == np.float32 and dtype == "float64"):  # widening is exact
            raise InputError(f"{name}: expected {dtype} input; got {x.dtype} (cast with x.astype(np.{dtype}))")
        if spec and min(x.shape[2:]) < spec.min_size:
            raise InputError(f"{name}: input {x.shape[2]}x{x.shape[3]} is smaller than the "
                             f"architecture's minimum {spec.min_size}x{spec.min_size}")
        from ..inputs import refuse_unfit_size
        refuse_unfit_size(name, x.shape[1:])  # e.g. LeNet's flatten: 1x28x28 only
        if not np.isfinite(x).all():
            raise InputError(f"{name}: input holds NaN or Inf values")
        return x.astype(dtype, copy=False)


def to_nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw_outputs(outputs) -> list[np.ndarray]:
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.ascontiguousarray(o.transpose(0, 3, 1, 2)) if o.ndim == 4 else o for o in outputs]
