"""One framework-free loader that feeds torch, Keras and TF the same batches in the same order.

Every source is read into an `ImageSet` (uint8 HWC images, int64 labels, class names); a
`Loader` turns it into `(x_nchw float32, labels int64)` batches: seeded shuffle per epoch,
seeded augmentation per example (random resized crop, horizontal flip), resize to the
model's input, channel conversion and normalization. The three frameworks consume the same
numpy arrays, so their inputs cannot differ.

Sources (`open_source`):
    digits                  scikit-learn's bundled 8x8 digits (no download), seeded 80/20 split
    mnist:DIR | fashion-mnist:DIR | DIR with IDX files
                            train-images-idx3-ubyte[.gz] and friends, t10k-* as the test split
    DIR                     an ImageFolder: one sub-folder per class of JPEG/PNG files, or
                            DIR/train and DIR/val (or DIR/test) laid out that way

Bad data raises `DataError` naming the file or folder: an empty folder, a non-image or unreadable file,
a label outside the class range, a truncated or malformed IDX file, data that cannot train
(fewer than two classes; an image folder's class missing from the training or the test set).
An image folder without train/val sub-folders is split per class (stratified, seeded).
"""
import gzip
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ParityError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
NORMALIZATIONS = {  # name -> (mean, std) per channel, applied to pixels scaled to [0, 1]
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
AUGMENTATIONS = ("crop", "flip")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ParityError, ValueError):
    """Training or prediction data that cannot be used; the message names the file."""


# --- image sets ---------------------------------------------------------------------

class ImageSet:
    """Images (decoded on demand) with int64 labels and the class names they index."""

    def __init__(self, labels, classes, origins):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.origins = origins  # where example i comes from, for error messages

    def __len__(self):
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        """uint8 (H, W, C) with C = 1 or 3."""
        raise NotImplementedError

    def origin(self, i: int) -> str:
        return self.origins(i) if callable(self.origins) else self.origins[i]

    def subset(self, indices) -> "ImageSet":
        return _Subset(self, np.asarray(indices, dtype=np.int64))


class ArrayImages(ImageSet):
    def __init__(self, images: np.ndarray, labels, classes, origin: str):
        if images.ndim == 3:
            images = images[..., None]
        super().__init__(labels, classes, lambda i: f"{origin} (example {i})")
        self.images = images

    def image(self, i):
        return self.images[i]


class FolderImages(ImageSet):
    def __init__(self, paths, labels, classes):
        super().__init__(labels, classes, [str(p) for p in paths])
        self.paths = list(paths)

    def image(self, i):
        return read_image(self.paths[i])


class _Subset(ImageSet):
    def __init__(self, parent: ImageSet, indices):
        super().__init__(parent.labels[indices], parent.classes, lambda i: parent.origin(int(indices[i])))
        self.parent, self.indices = parent, indices

    def image(self, i):
        return self.parent.image(int(self.indices[i]))


@dataclass
class Split:
    train: ImageSet
    test: ImageSet
    classes: list
    source: str
    small: bool  # digit-like data: no flips or crops by default, 1 channel native


def read_image(path) -> np.ndarray:
    """uint8 (H, W, 1) for grayscale files, (H, W, 3) otherwise; DataError naming the file."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if img.mode in ("1", "L", "I;16", "I", "F") else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


# --- sources ------------------------------------------------------------------------

def open_source(source: str = "digits", *, seed: int = 0, test_fraction: float = 0.2, limit: int | None = None) -> Split:
    """The train and test sets of a source (see the module docstring); `limit` keeps a seeded
    subset of at most that many training and test examples (quick runs, tests)."""
    kind, _, where = source.partition(":")
    if source == "digits":
        split = _digits(seed, test_fraction)
    elif kind in ("mnist", "fashion-mnist", "idx") and where:
        split = idx_split(Path(where).expanduser(), FASHION_CLASSES if kind == "fashion-mnist" else None)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{source}: no such data source; use 'digits', mnist:DIR, fashion-mnist:DIR or an "
                            f"ImageFolder directory")
        if not path.is_dir():
            raise DataError(f"{source}: a data source is a directory (ImageFolder or IDX files), not a file")
        split = idx_split(path) if _find_idx(path, IDX_FILES["train"][0]) else folder_split(path, seed, test_fraction)
    check_trainable(split)
    return _limited(split, limit, seed) if limit else split


def check_trainable(split: Split) -> None:
    """DataError naming the source unless the training set holds two classes or more (one class
    trains to a loss of 0 and an accuracy of 1 whatever the model does)."""
    present = np.unique(split.train.labels)
    if len(present) < 2:
        names = [split.classes[c] for c in present]
        raise DataError(f"{split.source}: {len(present)} class{'' if len(present) == 1 else 'es'} {names} in the "
                        f"training set; training needs at least two (one sub-folder of images per class)")


def check_every_class_on_both_sides(split: Split) -> None:
    """An image folder's classes are the sub-folders: each must have examples in both sets."""
    n = len(split.classes)
    total = np.bincount(split.train.labels, minlength=n) + np.bincount(split.test.labels, minlength=n)
    for part, images in (("training", split.train), ("test", split.test)):
        missing = np.flatnonzero(np.bincount(images.labels, minlength=n) == 0)
        if missing.size and n >= 2:
            detail = ", ".join(f"{split.classes[c]!r} ({total[c]} image{'' if total[c] == 1 else 's'})" for c in missing)
            raise DataError(f"{split.source}: the {part} set has no examples of {missing.size} of {n} classes: "
                            f"{detail}; give each class two images or more, or lay out DIR/train and DIR/val")


def _limited(split: Split, limit: int, seed: int) -> Split:
    def keep(images):
        if len(images) <= limit:
            return images
        return images.subset(np.sort(np.random.default_rng([seed, len(images)]).permutation(len(images))[:limit]))
    return Split(keep(split.train), keep(split.test), split.classes, split.source, split.small)


def _seeded_split(n: int, seed: int, test_fraction: float):
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must be between 0 and 1; got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _stratified_split(labels, seed: int, test_fraction: float):
    """(train, test) indices with `test_fraction` of each class held out, at least one example
    of every class with two or more on each side (a class of one stays in training, and
    check_trainable names it)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must be between 0 and 1; got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(max(1, int(round(len(members) * test_fraction))), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _digits(seed: int, test_fraction: float) -> Split:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("digits: the embedded data set needs scikit-learn (pip install -e '.[data]' in the clone)") from None
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values 0..16
    data = ArrayImages(images, bunch.target, [str(d) for d in range(10)], "sklearn digits")
    train, test = _seeded_split(len(data), seed, test_fraction)
    return Split(data.subset(train), data.subset(test), data.classes, "digits", small=True)


def folder_split(root: Path, seed: int = 0, test_fraction: float = 0.2) -> Split:
    """ImageFolder: root/<class>/<image>; root/train + root/val (or test) give the split."""
    root = Path(root)
    held_out = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        train = image_folder(root / "train")
        split = Split(train, image_folder(held_out, classes=train.classes), train.classes, str(root), small=False)
    else:
        data = image_folder(root)
        train, test = _stratified_split(data.labels, seed, test_fraction)
        split = Split(data.subset(train), data.subset(test), data.classes, str(root), small=False)
    check_every_class_on_both_sides(split)
    return split


def image_folder(root, classes=None) -> FolderImages:
    """Every image of root/<class>/, classes sorted by name; each file is checked up front."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root}: empty image folder (expected one sub-folder of images per class)")
    if classes is not None and found != list(classes):
        raise DataError(f"{root}: classes {found} differ from the training classes {list(classes)}")
    paths, labels = [], []
    for label, name in enumerate(found):
        files = sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))
        images = [p for p in files if p.is_file()]
        if not images:
            raise DataError(f"{root / name}: class folder holds 0 images ({len(files)} other entries)")
        for path in images:
            _check_image_file(path)
        paths += images
        labels += [label] * len(images)
    return FolderImages(paths, labels, found)


def _check_image_file(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{path}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)}); move it out of "
                        f"the class folder")
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def write_class_indices(classes, path) -> None:
    """{"0": "daisy", "1": "dandelion", ...} as the source tutorials write it; atomic."""
    from ..io import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({str(i): name for i, name in enumerate(classes)}, indent=2))


def read_class_indices(path) -> list:
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable class_indices.json ({exc})") from None
    if not isinstance(mapping, dict) or sorted(mapping, key=lambda k: int(k) if k.isdigit() else -1) != \
            [str(i) for i in range(len(mapping))]:
        raise DataError(f"{path}: expected {{\"0\": name, \"1\": name, ...}} with indices 0..N-1")
    return [mapping[str(i)] for i in range(len(mapping))]


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------

def idx_split(directory: Path, classes=None) -> Split:
    directory = Path(directory)
    sets = {part: _idx_set(directory, *names, classes) for part, names in IDX_FILES.items()}
    return Split(sets["train"], sets["test"], sets["train"].classes, str(directory), small=True)


def _idx_set(directory: Path, images_name: str, labels_name: str, classes) -> ArrayImages:
    images_path, labels_path = _find_idx(directory, images_name), _find_idx(directory, labels_name)
    for path, name in ((images_path, images_name), (labels_path, labels_name)):
        if path is None:
            raise DataError(f"{directory / name}[.gz]: IDX file not found")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images (N, H, W); found {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label vector; found shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    classes = list(classes or [str(d) for d in range(10)])
    check_labels(labels, len(classes), str(labels_path))
    return ArrayImages(images, labels.astype(np.int64), classes, str(images_path))


def _find_idx(directory: Path, name: str):
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path) -> np.ndarray:
    """An IDX array (magic 0 0 type ndim, big-endian uint32 dims, data); DataError naming the
    file when it is truncated, too long or not IDX."""
    path = Path(path)
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise DataError(f"{path}: {what}: dims {dims} need {expected} data bytes, found {found}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def check_labels(labels, num_classes: int, origin: str) -> None:
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(f"{origin}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside 0..{num_classes - 1} "
                        f"({bad.size} such labels)")


# --- preprocessing ------------------------------------------------------------------

@dataclass(frozen=True)
class Preprocess:
    """What turns an image into a model input; saved beside trained weights so predict repeats it."""
    size: int
    channels: int
    normalize: str = "half"

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalize!r}; choose {', '.join(NORMALIZATIONS)}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {self.channels}")

    def to_metadata(self) -> dict:
        return {"size": str(self.size), "channels": str(self.channels), "normalize": self.normalize}

    @classmethod
    def from_metadata(cls, meta: dict):
        if not {"size", "channels"} <= set(meta):
            return None
        return cls(int(meta["size"]), int(meta["channels"]), meta.get("normalize", "half"))


def describe_preprocessing(image: np.ndarray, prep: Preprocess) -> str:
    """What preprocess() does to `image` (uint8 HWC), in words: "resized 640x480 -> 224x224, ..." """
    h, w, c = image.shape
    steps = [f"resized {w}x{h} -> {prep.size}x{prep.size}" if (w, h) != (prep.size, prep.size)
             else f"kept {w}x{h}"]
    if c != prep.channels:
        steps.append({(3, 1): "RGB -> grayscale", (1, 3): "grayscale -> 3 channels"}[(c, prep.channels)])
    mean, std = (v[:prep.channels] for v in NORMALIZATIONS[prep.normalize])
    steps.append(f"normalized {prep.normalize} (mean {', '.join(map(str, mean))}; std {', '.join(map(str, std))})")
    return ", ".join(steps)


def preprocess(image: np.ndarray, prep: Preprocess, rng=None, augment=()) -> np.ndarray:
    """uint8 HWC image -> float32 CHW model input. With an rng: the seeded augmentations."""
    from PIL import Image
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if prep.channels == 1 and pil.mode != "L":
        pil = pil.convert("L")
    box = None
    if rng is not None and "crop" in augment:
        box = random_resized_box(pil.width, pil.height, rng)
    pil = pil.resize((prep.size, prep.size), Image.BILINEAR, box=box)
    array = np.asarray(pil, dtype=np.float32) / 255.0
    array = array[..., None] if array.ndim == 2 else array
    if prep.channels == 3 and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if rng is not None and "flip" in augment and rng.random() < 0.5:
        array = array[:, ::-1]
    mean, std = (np.asarray(v[:prep.channels], dtype=np.float32) for v in NORMALIZATIONS[prep.normalize])
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


def random_resized_box(width: int, height: int, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(left, top, right, bottom) of a random crop covering `scale` of the area with aspect in
    `ratio` (log-uniform), the rule of the tutorials' RandomResizedCrop; center crop if 10 draws miss."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return (left, top, left + w, top + h)
    aspect = width / height
    w, h = (int(round(height * ratio[1])), height) if aspect > ratio[1] else \
        (width, int(round(width / ratio[0]))) if aspect < ratio[0] else (width, height)
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def parse_augment(text: str | None) -> tuple:
    names = tuple(a for a in (text or "").replace("+", ",").split(",") if a and a != "none")
    unknown = [a for a in names if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from none, {', '.join(AUGMENTATIONS)}")
    return names


# --- batches ------------------------------------------------------------------------

class Loader:
    """Seeded batches of one ImageSet. `batches(epoch)` is a pure function of (seed, epoch):
    call it once per framework or share one pass, the arrays are identical."""

    def __init__(self, images: ImageSet, prep: Preprocess, *, batch_size: int, shuffle: bool = False,
                 augment=(), seed: int = 0, num_classes: int | None = None, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch size must be positive; got {batch_size}")
        if len(images) == 0:
            raise DataError("no examples to load")
        if num_classes is not None:
            bad = np.flatnonzero((images.labels < 0) | (images.labels >= num_classes))
            if bad.size:
                raise DataError(f"{images.origin(int(bad[0]))}: label {int(images.labels[bad[0]])} is outside "
                                f"0..{num_classes - 1} (the model has {num_classes} classes; {bad.size} such labels)")
        self.images, self.prep, self.batch_size = images, prep, batch_size
        self.shuffle, self.augment, self.seed, self.drop_last = shuffle, tuple(augment), seed, drop_last

    def __len__(self):
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self) * self.batch_size if self.drop_last else len(self.images)

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.images)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def batches(self, epoch: int = 0):
        order = self.order(epoch)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            indices = order[start:start + self.batch_size]
            yield self._batch(indices, epoch)

    def _batch(self, indices, epoch):
        xs = []
        for i in indices:
            rng = np.random.default_rng([self.seed, epoch, int(i), 1]) if self.augment else None
            xs.append(preprocess(self.images.image(int(i)), self.prep, rng, self.augment))
        return np.stack(xs), self.images.labels[indices].astype(np.int64)
