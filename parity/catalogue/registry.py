"""The table of models: every model, its builders, default input and what a transfer needs
to know, registered through one public path, register_model.

Each catalogue family registers its entries in parity/catalogue/<family>.py, loaded on first
use, with builders found by name (`<framework>_impl.<module>.<builder>`); a model of one's own
brings its builders (docs/own-model.md). Nothing here imports a framework."""
import contextlib
import importlib
import os
import pkgutil
import re
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
    module: str | None = None  # file name shared by torch_impl/, keras_impl/ and tf_impl/
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
    # A model that lives anywhere (register_model): {framework: builder, or "package.module:name"};
    # empty for the catalogue's, found by `module` in the three packages.
    builders: dict = field(default_factory=dict)
    # {framework: {native layer path: canonical path} or [(regex, replacement), ...]}: a port
    # whose layer names are not the torch module paths (docs/own-model.md)
    rename: dict = field(default_factory=dict)
    origin: str = "catalogue"  # where it was registered: the catalogue, a module, an entry point

    def canonical_path(self, framework: str, path: str) -> str:
        """A native layer path as its torch module path, by `rename` (unchanged where no rule matches)."""
        rules = self.rename.get(framework)
        if isinstance(rules, dict):
            return rules.get(path, path)
        for pattern, replacement in rules or ():
            if re.fullmatch(pattern, path):
                return re.sub(pattern, replacement, path)
        return path

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks it is written in, the reference (torch) first."""
        return tuple(f for f in FRAMEWORKS if f in self.builders) if self.builders else FRAMEWORKS

    @property
    def ports(self) -> tuple[str, ...]:
        """The frameworks judged against the reference: all it is written in but the first."""
        return self.frameworks[1:]

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
_LOADED = False
_ORIGIN = ["python"]  # the origin of what registers now (a --models-from module, an entry point)
LOAD_PROBLEMS: list[str] = []  # entry points that failed to load: `parity list` reports them
ENTRY_POINTS = "cnn_parity.models"
# The --models-from modules of this process, comma-separated, for the processes it starts (the
# data-parallel check's TF child, torch's DDP ranks): they import them on first use too.
MODELS_FROM = "PARITY_MODELS_FROM"
SPEC_FIELDS = {f for f in ModelSpec.__dataclass_fields__} - {"name", "builders", "origin"}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered ({_REGISTRY[spec.name].origin})")
    _REGISTRY[spec.name] = spec
    return spec


Builder = Callable[..., Any] | str  # a callable returning the framework's model, or "package.module:name"


def register_model(name: str, *, torch: Builder | None = None, keras: Builder | None = None,
                   tf: Builder | None = None, input_size: tuple[int, int, int] = (3, 224, 224),
                   **spec: Any) -> ModelSpec:
    """Register a model that lives anywhere: `torch`, `keras`, `tf` are builders (callables
    returning the framework's model, or "package.module:name"), any two of them; the reference
    is torch's, else the first given; `spec` takes what ModelSpec knows (outputs, classifier,
    fixed_size, flatten_linear, head, aux_weights, test_sizes, ...). The catalogue registers through here
    too, with `module=` naming the file its three packages share instead of builders."""
    _load_catalogue()
    builders = {f: b for f, b in (("torch", torch), ("keras", keras), ("tf", tf)) if b is not None}
    refuse_bad_registration(name, builders, spec)
    return register(ModelSpec(name, **{"family": name, **spec}, input_size=tuple(input_size), builders=builders,
                              origin=_ORIGIN[-1]))


def refuse_bad_registration(name: str, builders: dict, spec: dict) -> None:
    """One line naming the model for an unknown option, a rename of the reference's names, a
    builder that is not one, or fewer than two frameworks."""
    unknown = sorted(set(spec) - SPEC_FIELDS)
    if unknown:
        raise ValueError(f"model {name!r}: unknown option(s) {', '.join(unknown)}; "
                         f"a ModelSpec takes {', '.join(sorted(SPEC_FIELDS))}")
    for framework in spec.get("rename", {}):
        if framework not in ("keras", "tf"):
            raise ValueError(f"model {name!r}: rename maps Keras' or TF's layer paths to torch's, not {framework!r}")
    for framework, made in builders.items():
        if not (callable(made) or (isinstance(made, str) and ":" in made)):
            raise ValueError(f"model {name!r}: the {framework} builder must be a callable or 'package.module:name', "
                             f"got {made!r}")
    if not spec.get("module") and len(builders) < 2:
        raise ValueError(f"model {name!r}: give builders for two frameworks or three (the reference is torch's, "
                         f"else the first given); got {', '.join(builders) or 'none'}")


def unregister(name: str) -> None:
    """Forget a model registered from outside the catalogue (a test's own, say)."""
    spec = _REGISTRY.get(name)
    if spec is not None and spec.origin == "catalogue":
        raise ValueError(f"model {name!r} is the catalogue's: it cannot be unregistered")
    _REGISTRY.pop(name, None)


def _load_catalogue() -> None:
    """The catalogue's families, then every `cnn_parity.models` entry point, once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    with registering_from("catalogue"):
        for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
            if info.name != "registry":
                importlib.import_module(f"{__package__}.{info.name}")
    from importlib.metadata import entry_points
    for entry in entry_points(group=ENTRY_POINTS):
        with registering_from(f"entry point {entry.name} ({entry.value})"):
            try:
                loaded = entry.load()
                if callable(loaded):
                    loaded()
            except Exception as exc:  # a broken plug-in must not take the catalogue down
                LOAD_PROBLEMS.append(f"entry point {entry.name!r} ({entry.value}): {type(exc).__name__}: {exc}")
    for module in _handed_down():  # a child process of a command given --models-from
        with registering_from(f"module {module}"):
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - reported by `parity list`, as an entry point's
                LOAD_PROBLEMS.append(f"{MODELS_FROM} module {module!r}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def registering_from(origin: str):
    """What registers meanwhile is shown with this origin (`parity list`)."""
    _ORIGIN.append(origin)
    try:
        yield
    finally:
        _ORIGIN.pop()


def import_models(module: str) -> None:
    """--models-from MODULE: import a module that registers models."""
    _load_catalogue()
    with registering_from(f"module {module}"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--models-from {module}: cannot import it ({exc})") from None
    if module not in _handed_down():
        os.environ[MODELS_FROM] = ",".join([*_handed_down(), module])


def _handed_down() -> list[str]:
    return [m for m in os.environ.get(MODELS_FROM, "").split(",") if m]


def get(name: str) -> ModelSpec:
    _load_catalogue()
    if name not in _REGISTRY and ":" in name:
        return register_by_path(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"{unknown_choice('model', name, _REGISTRY)}; `parity list` shows the catalogue") from None


FRAMEWORK_WORD = re.compile(r"(?<![A-Za-z0-9])(torch|keras|tf)(?![A-Za-z0-9])")


def register_by_path(name: str) -> ModelSpec:
    """A model named `package.module:builder`, whose module path names its framework as one word
    (mypkg.torch_models, mypkg.models_tf, mypkg.keras.nets): the same builder name in the
    modules that name the other frameworks instead, where they exist. The named module's
    PARITY_SPECS[builder], if any, gives the spec (input_size, outputs, ...)."""
    import importlib.util
    module, _, builder_name = name.partition(":")
    if len(FRAMEWORK_WORD.findall(module)) != 1 or not builder_name:
        raise KeyError(f"{name}: a model named by path is 'package.module:builder' with one framework word "
                       f"(torch, keras or tf) in the module path, e.g. mypkg.torch_models:mynet")
    builders = {}
    for framework in FRAMEWORKS:
        candidate = FRAMEWORK_WORD.sub(framework, module)
        try:
            found = importlib.util.find_spec(candidate) is not None
        except ImportError:
            found = False
        if found:
            builders[framework] = f"{candidate}:{builder_name}"
    try:
        options = getattr(importlib.import_module(module), "PARITY_SPECS", {}).get(builder_name, {})
    except ImportError as exc:
        raise KeyError(f"{name}: cannot import {module} ({exc})") from None
    with registering_from(f"path {module}"):
        return register_model(name, **builders, **options)


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
    if spec.module:
        return getattr(importlib.import_module(f"{framework}_impl.{spec.module}"), spec.builder_name)
    made = spec.builders.get(framework)
    if made is None:
        raise ValueError(f"{spec.name}: no {framework} builder was registered (it has {', '.join(spec.frameworks)})")
    if callable(made):
        return made
    module, _, attribute = made.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{spec.name}: its {framework} builder {made!r} cannot be found ({exc})") from None
