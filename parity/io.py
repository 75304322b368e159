"""Weight files and atomic writes.

Canonical state is stored as safetensors. Nothing is ever unpickled: torch checkpoints
load with weights_only=True. Every write goes to a temp file beside the target and is
renamed into place, so an interrupted run leaves no partial output.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import WeightFileError

IGNORED_KEYS = ("num_batches_tracked",)


@contextlib.contextmanager
def atomic_path(path, *, directory=False):
    """Yield a temp path beside `path` (same suffixes); rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        if directory:
            tmp.mkdir()
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        _follow_umask(tmp)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path, payload) -> None:
    """`payload` as indented JSON at `path`, written atomically (numpy scalars as floats)."""
    import json
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=float))


def _follow_umask(path: Path) -> None:
    """Give `path` the mode a plain open() or mkdir() would (temp files are created 0600,
    mkdtemp 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def is_weight_key(key: str) -> bool:
    return not key.endswith(IGNORED_KEYS)


def save_state(state: dict[str, np.ndarray], path: str | os.PathLike, metadata: dict | None = None) -> None:
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata a .safetensors file carries ({} for other files)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), "np") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightFileError(f"{path}: not a readable safetensors file ({exc})") from None


def load_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Canonical state from a .safetensors file or a torch checkpoint (.pt/.pth/.bin)."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such weight file")
    if path.suffix in (".pt", ".pth", ".bin"):
        return _load_torch_checkpoint(path)
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightFileError(f"{path}: not a readable safetensors file ({exc})") from None
    return {k: v for k, v in state.items() if is_weight_key(k)}


def _load_torch_checkpoint(path: Path) -> dict:
    import pickle
    import zipfile

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightFileError(f"{path}: not a loadable torch checkpoint (weights_only=True): {first}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise WeightFileError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        if is_weight_key(key):
            state[key.removeprefix("module.")] = value.detach().cpu().numpy()
    return state
