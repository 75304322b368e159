"""`parity predict`: classify images with one set of weights in each framework, side by side.

Every framework gets the same numpy input (parity.train.data.preprocess: resize, channels,
normalization as recorded in the weight file by `parity train`, else the flags), runs in
inference mode, and reports its top-k; the command says whether the frameworks agree.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..adapters import adapter
from ..catalogue.registry import get
from ..errors import WeightFileError, unknown_choice
from ..frameworks import import_safely, missing
from ..io import load_state, read_metadata
from ..weights import from_keras_applications
from .data import Preprocess, describe_preprocessing, preprocess, read_image

FRAMEWORKS = ("torch", "keras", "tf")


def select_frameworks(text: str | None, model: str | None = None):
    """(the named frameworks that can run here, notes on those left out and why); none named:
    those `model` is written in (every framework for the catalogue)."""
    wanted = [f for f in (text or ",".join(get(model).frameworks if model else FRAMEWORKS)).split(",") if f]
    unknown = [f for f in wanted if f not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"{unknown_choice('framework', unknown[0], FRAMEWORKS)}; choose from {', '.join(FRAMEWORKS)}")
    chosen = [f for f in wanted if missing(f) is None]
    notes = [f"{f} left out: {missing(f)}" for f in wanted if missing(f) is not None]
    if not chosen:
        raise RuntimeError("no framework to run: " + "; ".join(notes))
    return chosen, notes


def read_weights(path, name: str | None = None):
    """(canonical state, metadata) from canonical .safetensors, a torch .pth (weights_only) or a
    keras.applications model file (.keras/.h5, converted with parity.weights)."""
    path = Path(path)
    if str(path).endswith((".keras", ".h5")) and not str(path).endswith(".weights.h5"):
        return _keras_applications_state(path, name), {}
    return load_state(path), read_metadata(path)


def _keras_applications_state(path: Path, name: str | None):
    keras = import_safely("keras")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise WeightFileError(f"{path}: not a loadable Keras model file ({exc})") from None
    found, state = from_keras_applications(model)
    if name is not None and found != name:
        raise WeightFileError(f"{path}: holds a keras.applications model that maps to {found!r}, not {name!r}")
    return state


def num_classes_of(name: str, state: dict, framework: str, input_size) -> int | None:
    """Classes of the head in `state`: the width of the bias whose shape differs from the
    default model's; None when nothing differs (the builder's default stands)."""
    a = adapter(framework)
    slots = a.slots(a.build(name, input_size=input_size))
    for key, slot in slots.items():
        if key in state and key.endswith(".bias") and tuple(np.shape(state[key])) != tuple(slot.shape):
            return int(np.shape(state[key])[0])
    return None


def default_preprocess(name: str, meta: dict, size=None, normalize=None):
    spec = get(name)
    recorded = Preprocess.from_metadata(meta)
    channels = spec.input_size[0]
    return Preprocess(size or (recorded.size if recorded else spec.input_size[1]), channels,
                      normalize or (recorded.normalize if recorded else "imagenet" if channels == 3 else "half"))


@dataclass
class Prediction:
    image: str
    top: dict = field(default_factory=dict)  # framework -> [(class name, probability), ...]
    agree: bool = True
    max_prob_diff: float = 0.0
    preprocessing: str = ""  # what was done to the image, in words (data.describe_preprocessing)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict(name: str, images, weights, *, frameworks=("torch", "keras", "tf"), classes=None, top: int = 5,
            size=None, normalize=None):
    """[Prediction per image], the Preprocess used and the class names."""
    state, meta = read_weights(weights, name)
    prep = default_preprocess(name, meta, size, normalize)
    input_size = (prep.channels, prep.size, prep.size)
    classes = list(classes) if classes else json.loads(meta["classes"]) if "classes" in meta else None
    n_classes = len(classes) if classes else num_classes_of(name, state, frameworks[0], input_size)
    head = {} if n_classes is None else {"num_classes": n_classes}
    decoded = [read_image(p) for p in images]
    x = np.stack([preprocess(image, prep) for image in decoded])
    probs = {}
    for framework in frameworks:
        a = adapter(framework)
        model = a.build(name, input_size=input_size, **head)
        a.load_state_dict(model, state)
        probs[framework] = softmax(a.run(model, x)[0])
    n_classes = next(iter(probs.values())).shape[-1]
    classes = classes or [str(i) for i in range(n_classes)]
    if len(classes) != n_classes:
        raise ValueError(f"{len(classes)} class names for a model with {n_classes} outputs")
    k = min(top, n_classes)
    results = []
    for i, image in enumerate(images):
        p = Prediction(str(image), preprocessing=describe_preprocessing(decoded[i], prep))
        rankings = {}
        for framework, prob in probs.items():
            order = np.argsort(-prob[i], kind="stable")[:k]
            rankings[framework] = tuple(order)
            p.top[framework] = [(classes[j], float(prob[i, j])) for j in order]
        p.agree = len(set(rankings.values())) == 1
        stacked = np.stack([prob[i] for prob in probs.values()])
        p.max_prob_diff = float((stacked.max(axis=0) - stacked.min(axis=0)).max())
        results.append(p)
    return results, prep, classes
