"""Which frameworks are installed, and importing them in an order that cannot crash.

torch's CUDA wheels bring triton. triton's native library and TensorFlow's both carry
LLVM, and loading triton after TensorFlow aborts the whole process ("Option ... registered
more than once", exit -6; -11 on some machines), while the other order works. torch loads
triton lazily (torch._dynamo, torch.onnx.export, torch.compile), so a process that merely
imported TensorFlow first dies later, far from the cause. parity therefore imports
TensorFlow, and Keras (which may import it), only through `import_safely`, which loads
torch and triton first when they are installed. docs/platforms.md explains the rule.

Nothing here imports a framework except `import_safely`; `installed` and `available`
only look the packages up.
"""
import contextlib
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import warnings

# parity's short names -> the module each one imports
MODULES = {"torch": "torch", "tf": "tensorflow", "keras": "keras", "onnx": "onnx", "onnxruntime": "onnxruntime",
           "tf2onnx": "tf2onnx", "onnxscript": "onnxscript", "triton": "triton", "jax": "jax"}
# Keras backend name -> parity's name of the package that backend needs
KERAS_BACKENDS = {"tensorflow": "tf", "torch": "torch", "jax": "jax"}
# pip package that provides each short name, for the notes
PACKAGES = {"tf": "tensorflow", "onnx": "onnx", "onnxruntime": "onnxruntime", "tf2onnx": "tf2onnx",
            "onnxscript": "onnxscript", "torch": "torch", "keras": "keras", "jax": "jax"}

_quiet = False


class MissingFramework(ModuleNotFoundError):
    """A framework parity was asked to use is not installed here."""


def installed(name: str) -> bool:
    """Whether a framework can be imported here, without importing it."""
    module = MODULES.get(name, name)
    if module in sys.modules:
        return sys.modules[module] is not None
    busy, _BeforeTensorflow.busy = _BeforeTensorflow.busy, True  # a look-up: the hook must not load torch
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
    finally:
        _BeforeTensorflow.busy = busy


def keras_backend() -> str:
    """The backend Keras uses, or will use once imported (KERAS_BACKEND, then keras.json)."""
    if sys.modules.get("keras") is not None:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def missing(name: str) -> str | None:
    """Why framework `name` (torch, keras, tf, onnxruntime, ...) cannot run here, or None."""
    if name == "keras":
        if not installed("keras"):
            return "keras is not installed"
        backend = keras_backend()
        needed = KERAS_BACKENDS.get(backend)
        if needed is None:
            return f"Keras backend {backend!r} is not one cnn-parity runs"
        if not installed(needed):
            return f"Keras is set to the {backend} backend, which is not installed"
        return None
    return None if installed(name) else f"{PACKAGES.get(name, name)} is not installed"


def available() -> dict[str, bool]:
    """{framework: usable here} for the runtimes parity knows."""
    return {name: missing(name) is None for name in ("torch", "keras", "tf", "onnx", "onnxruntime", "tf2onnx")}


def release_memory(framework: str | None = None) -> None:
    """Let finished models go: Keras' global graph state (it keeps it until cleared; cleared when
    `framework` is keras, or for any framework when None) and Python's garbage."""
    import gc
    if framework in (None, "keras") and "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def onnx_source_missing(source: str) -> str | None:
    """Why `parity` cannot export from `source` and run the result here (a package left out), or None."""
    for need in ("onnx", "onnxruntime", *(("onnxscript",) if source == "torch" else ("tf2onnx", "tf"))):
        if not installed(need):
            return f"{PACKAGES[need]} is not installed"
    return missing(source)


def set_quiet(quiet: bool) -> None:
    """Mute TensorFlow's start-up lines (oneDNN, absl) when parity imports it (the CLI's default)."""
    global _quiet
    _quiet = quiet


def verbose_requested() -> bool:
    return os.environ.get("PARITY_VERBOSE", "") not in ("", "0")


def import_safely(name: str):
    """Import a framework (parity's short name or a module name) after whatever must precede it."""
    module = MODULES.get(name, name)
    problem = missing(name) if name in ("torch", "keras", "tf") else None
    if problem:
        raise MissingFramework(f"{name}: {problem}")
    if _imports_tensorflow(module):
        _load_tensorflow()
    elif _loaded("tensorflow"):
        load_before_tensorflow()  # too late to order: keeps triton from aborting the process
    return importlib.import_module(module)


def _imports_tensorflow(module: str) -> bool:
    return module in ("tensorflow", "tf2onnx") or (module == "keras" and keras_backend() == "tensorflow")


def _load_tensorflow():
    guard_import_order()
    load_before_tensorflow()  # also where TensorFlow is already loaded: then it guards triton
    importlib.import_module("tensorflow")


def _loaded(module: str) -> bool:
    return sys.modules.get(module) is not None


def load_before_tensorflow() -> None:
    """torch, then triton, where installed: what must be in the process before TensorFlow."""
    if _loaded("tensorflow"):
        if installed("triton") and not _loaded("triton"):
            _refuse_triton_after_tensorflow()
        return
    for name in ("torch", "triton"):
        if installed(name):
            importlib.import_module(name)


def guard_import_order() -> None:
    """From now on, the first `import tensorflow` anywhere in this process (keras_impl, tf_impl,
    tf2onnx, the user's own code) first loads torch and triton; `import parity` installs it."""
    if not any(isinstance(f, _BeforeTensorflow) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTensorflow())


class _BeforeTensorflow:
    """Import hook that runs on the first `import tensorflow` only; it loads nothing itself."""
    busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or _BeforeTensorflow.busy:
            return None
        _BeforeTensorflow.busy = True
        try:
            load_before_tensorflow()
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        finally:
            _BeforeTensorflow.busy = False
        if spec is not None and spec.loader is not None and _quiet and not verbose_requested():
            spec.loader = _MutedLoader(spec.loader)
        return spec


class _MutedLoader:
    """TensorFlow's own loader, run with file descriptor 2 muted."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _muted_stderr(True):
            self.loader.exec_module(module)
        # TensorFlow's Python warnings (tf2onnx's use of TF1 APIs) go through this logger
        logging.getLogger("tensorflow").setLevel(logging.ERROR)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _TritonAfterTensorflow:
    """Import hook: triton after TensorFlow would abort the process, so it fails as an
    ImportError instead (torch then treats triton as absent and runs without it)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "triton" or fullname.startswith("triton."):
            raise ImportError("triton cannot be loaded after TensorFlow in one process (both carry LLVM; "
                              "the process would abort): import parity or torch before tensorflow")
        return None


def _refuse_triton_after_tensorflow():
    if not any(isinstance(f, _TritonAfterTensorflow) for f in sys.meta_path):
        warnings.warn("TensorFlow was imported before torch/triton: triton is disabled in this process "
                      "(loading it now would abort). Import parity or torch before tensorflow.", stacklevel=3)
        sys.meta_path.insert(0, _TritonAfterTensorflow())


@contextlib.contextmanager
def _muted_stderr(enabled: bool):
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines bypass Python."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
