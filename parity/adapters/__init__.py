"""One adapter per framework behind one small interface (see base.Adapter), and the training
step they all speak (step.py: Hyper, Trainer, dropout masks)."""
from .base import Adapter
from .keras_adapter import KerasAdapter
from .tf_adapter import TFAdapter
from .torch_adapter import TorchAdapter

ADAPTERS: dict[str, Adapter] = {"torch": TorchAdapter(), "keras": KerasAdapter(), "tf": TFAdapter()}


def adapter(framework: str) -> Adapter:
    try:
        return ADAPTERS[framework]
    except KeyError:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(ADAPTERS)}") from None


def adapter_for(model) -> Adapter:
    # Keras first: a Keras model on the torch backend is also a torch.nn.Module.
    for name in ("keras", "torch", "tf"):
        if ADAPTERS[name].owns(model):
            return ADAPTERS[name]
    raise TypeError(f"{type(model).__name__} is not a torch_impl, keras_impl or tf_impl model")
