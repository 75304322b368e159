"""torchvision's model code beside the pinned CPU torch, as an external reference.

torchvision's PyPI wheel matching torch 2.13 (0.28.0) is a CUDA build; installed with
`pip install --no-deps --target` beside the venv (tests/_beside.py does it on first use) its
C++ ops cannot load against the CPU torch, and its import fails while registering fake
kernels for `torchvision::nms`/`qnms`. Its classification models are pure Python and use
no custom op: declaring those two op schemas lets it import.
"""
import os
import sys
from pathlib import Path

from _beside import installed_beside

WHY_NOT = ""  # why torchvision is not there, when import_torchvision returns None


def target_dir() -> Path | None:
    """PARITY_TORCHVISION_PATH, else the folder tests/_beside.py installs it into."""
    global WHY_NOT
    if os.environ.get("PARITY_TORCHVISION_PATH"):
        return Path(os.environ["PARITY_TORCHVISION_PATH"])
    target, WHY_NOT = installed_beside("torchvision")
    return target


def import_torchvision():
    """torchvision, or None when it is neither importable nor installed beside the venv."""
    target = target_dir()
    if target is not None and target.is_dir() and str(target) not in sys.path:
        sys.path.append(str(target))
    try:
        import torchvision
        return torchvision
    except ImportError:
        if target is not None and target.is_dir():  # installed but broken: fail rather than skip the references
            raise
        return None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    torchvision._parity_schema_library = library  # the schemas live as long as the module
    return torchvision
