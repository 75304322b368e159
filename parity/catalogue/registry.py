"""The catalogue's table: every model, its builders, default input and what a transfer needs
to know.

Each family registers its entries in parity/catalogue/<family>.py, loaded on first use;
nothing here imports a framework. Builders are found by name: `<framework>_impl.<module>.<builder>`.
"""
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import unknown_choice

FRAMEWORKS = ("torch", "keras", "tf")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    module: str  # file name shared by torch_impl/, keras_impl/ and tf_impl/
    input_size: tuple[int, int, int] = (3, 224, 224)  # (C, H, W) used by `parity check`
    test_sizes: tuple[int, int] = (64, 57)  # a small even and a small odd size for the tests
    min_size: int = 1  # smallest H and W the architecture accepts
    train_min_size: int = 1  # smallest H and W a training step accepts (an auxiliary head's floor)
    published_params: int | None = None
    builder: str | None = None  # defaults to `name`
    kwargs: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ("logits",)
    classifier: bool = True
    fixed_size: bool = False  # Keras/TF graphs need a static H, W (flatten, adaptive pooling)
    # Linear layers fed by a spatial flatten: {path: (C, H, W)}; native frameworks flatten
    # in (H, W, C) order, so these weights are permuted in transfer.
    flatten_linear: dict = field(default_factory=dict)
    # Regex of the BatchNorm paths that close a residual branch. Calibration draws their
    # scale small, as training leaves it: with unit gains a random ResNet-50 amplifies
    # rounding so much that torch fp32 alone is 1.6e-5 from fp64 (5e-7 with small gains).
    residual_norms: str | None = None
    # Module-path prefixes of the head: what --freeze-backbone leaves trainable and finetune
    # replaces (e.g. ("fc",) for ResNet). Empty: the model has no replaceable head.
    head: tuple[str, ...] = ()
    # Loss weights of the auxiliary outputs (outputs after the first in training mode), as
    # torchvision's training references weigh them: GoogLeNet 0.3 each, Inception v3 0.4.
    aux_weights: tuple[float, ...] = ()
    # Which source tutorial writes this network as it is here ("seed 004: ..."; ../shared/seeds,
    # docs/tutorials.md); its checkpoints load through parity.weights.from_tutorial.
    tutorial: str | None = None

    def in_head(self, key: str) -> bool:
        """Whether a canonical key (module path, or path.param) belongs to the head."""
        return any(key == p or key.startswith(p + ".") for p in self.head)

    def input_shape(self, batch: int = 1, size=None) -> tuple:
        """(N, C, H, W): the model's input, or `size` (an int for a square, or (H, W)) instead."""
        c, h, w = self.input_size
        if size is not None:
            h, w = (size, size) if isinstance(size, int) else size
        return batch, c, h, w

    def training_size(self, size: int | None = None) -> int:
        """`size` (default: the first test size, raised to train_min_size) for a training step;
        a smaller one is refused by name, not by the layer it would break."""
        size = size or max(self.test_sizes[0], self.train_min_size)
        if size < self.train_min_size:
            raise ValueError(f"{self.name}: a training step takes at least {self.train_min_size}x"
                             f"{self.train_min_size} inputs (its auxiliary head runs in training mode); got {size}")
        return size

    @property
    def builder_name(self) -> str:
        return self.builder or self.name


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_catalogue() -> None:
    if _REGISTRY:
        return
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")


def get(name: str) -> ModelSpec:
    _load_catalogue()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"{unknown_choice('model', name, _REGISTRY)}; `parity list` shows the catalogue") from None


def find(name: str) -> ModelSpec | None:
    _load_catalogue()
    return _REGISTRY.get(name)


def names(family: str | None = None) -> list[str]:
    _load_catalogue()
    return [n for n, s in _REGISTRY.items() if family is None or s.family == family]


def builder(spec: ModelSpec, framework: str) -> Callable[..., Any]:
    if framework not in FRAMEWORKS:
        raise ValueError(f"{unknown_choice('framework', framework, FRAMEWORKS)}; choose one of {', '.join(FRAMEWORKS)}")
    from ..frameworks import import_safely
    import_safely(framework)  # torch and triton before TensorFlow: parity/frameworks.py
    module = importlib.import_module(f"{framework}_impl.{spec.module}")
    return getattr(module, spec.builder_name)
