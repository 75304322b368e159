"""parity.train.data (one loader for three frameworks), `parity predict`, `parity train`, `parity finetune`.

Every data file is generated here in tmp_path; the embedded digits come with scikit-learn.
"""
import gzip
import json
import shutil
import struct

import numpy as np
import pytest

from parity.train import data
from parity.train.data import DataError, Loader, Preprocess


# --- helpers --------------------------------------------------------------------------

def write_idx(path, array, *, type_code=0x08, cut=0):
    array = np.asarray(array)
    raw = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(array.dtype.newbyteorder(">")).tobytes()
    raw = raw[:len(raw) - cut]
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(raw)


def write_mnist_dir(root, n_train=24, n_test=8, size=28, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return root


def write_image_folder(root, classes=("cat", "dog", "emu"), per_class=4, size=20, mode="RGB", seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size + 3, 3) if mode == "RGB" else (size, size + 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            pixels[:, : 4 + 3 * c] = 255  # a class-dependent bright band on the left
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
    return root


def run_command(module, argv):
    """One command, in-process, through its module's own `register` (as parity.cli assembles it)."""
    import argparse

    from rich.console import Console
    parser = argparse.ArgumentParser(prog="parity")
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, Console(width=120))


# --- the loader -----------------------------------------------------------------------

def test_idx_parsing_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b", np.array([1.5, -2.0], dtype=np.float32), type_code=0x0D)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "b"), [1.5, -2.0])

    split = data.open_source(f"mnist:{write_mnist_dir(tmp_path / 'mnist')}")
    assert (len(split.train), len(split.test), split.small) == (24, 8, True)
    assert split.train.labels.dtype == np.int64 and split.train.labels[:3].tolist() == [0, 1, 2]
    assert data.open_source(str(tmp_path / "mnist")).classes == [str(d) for d in range(10)]  # found by its files
    assert data.open_source(f"fashion-mnist:{tmp_path / 'mnist'}").classes[9] == "Ankle boot"


@pytest.mark.parametrize("problem, message", [
    ("truncated_gz", "truncated or corrupt gzip"),
    ("truncated_data", r"truncated: dims \(24, 28, 28\) need 18816 data bytes, found 18716"),
    ("trailing", "longer than its header"),
    ("magic", "not an IDX file"),
    ("label_range", "label 12 at index 3 is outside 0..9"),
    ("count", "23 labels for 24 images"),
])
def test_bad_idx_names_the_file(tmp_path, problem, message):
    root = write_mnist_dir(tmp_path / "m")
    images, labels = root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
    pixels = np.zeros((24, 28, 28), np.uint8)
    bad = images
    if problem == "truncated_gz":
        raw = images.read_bytes()
        images.write_bytes(raw[: len(raw) // 2])
    elif problem == "truncated_data":
        write_idx(images, pixels, cut=100)
    elif problem == "trailing":
        write_idx(images, np.zeros((25, 28, 28), np.uint8))
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:4] + struct.pack(">I", 24) + raw[8:]))
    elif problem == "magic":
        images.write_bytes(gzip.compress(b"\x1f\x00\x08\x03" + bytes(40)))
    elif problem == "label_range":
        write_idx(labels, np.array([0, 1, 2, 12] + [0] * 20, np.uint8))
        bad = labels
    elif problem == "count":
        write_idx(labels, np.zeros(23, np.uint8))
        bad = labels
    with pytest.raises(DataError, match=message) as info:
        data.open_source(f"mnist:{root}")
    assert str(bad) in str(info.value)


def test_image_folder_classes_split_and_class_indices(tmp_path):
    root = write_image_folder(tmp_path / "flowers")
    split = data.open_source(str(root), seed=3)
    assert split.classes == ["cat", "dog", "emu"] and not split.small
    assert len(split.train) + len(split.test) == 12 and len(split.test) == 3  # one of each class's 4 held out
    assert sorted(split.test.labels) == [0, 1, 2]
    image = split.train.image(0)
    assert image.dtype == np.uint8 and image.shape == (20, 23, 3)
    data.write_class_indices(split.classes, tmp_path / "out" / "class_indices.json")
    assert json.loads((tmp_path / "out" / "class_indices.json").read_text()) == {"0": "cat", "1": "dog", "2": "emu"}
    assert data.read_class_indices(tmp_path / "out" / "class_indices.json") == split.classes
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["class_indices.json"]  # no temp file left

    write_image_folder(tmp_path / "tv" / "train")
    write_image_folder(tmp_path / "tv" / "val", per_class=1)
    split = data.open_source(str(tmp_path / "tv"))
    assert (len(split.train), len(split.test)) == (12, 3)


@pytest.mark.parametrize("problem, message", [
    ("empty_root", "empty image folder"),
    ("empty_class", "class folder holds 0 images"),
    ("text_file", "not an image file"),
    ("corrupt_png", "not a readable image"),
])
def test_bad_image_folder_names_the_file(tmp_path, problem, message):
    root = tmp_path / "imgs"
    root.mkdir()
    if problem != "empty_root":
        write_image_folder(root)
    bad = root
    if problem == "empty_class":
        bad = root / "fox"
        bad.mkdir()
    elif problem == "text_file":
        bad = root / "dog" / "notes.txt"
        bad.write_text("not an image")
    elif problem == "corrupt_png":
        bad = root / "emu" / "broken.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(DataError, match=message) as info:
        data.open_source(str(root))
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("layout, message", [
    ({"cat": 5}, r"1 class \[.cat.\] in the training set; training needs at least two"),
    ({"cat": 5, "dog": 1}, r"the test set has no examples of 1 of 2 classes: 'dog' \(1 image\)"),
])
def test_data_that_cannot_train_is_refused(tmp_path, layout, message):
    root = tmp_path / "imgs"
    for name, count in layout.items():
        write_image_folder(root, classes=(name,), per_class=count)
    with pytest.raises(DataError, match=message) as info:
        data.open_source(str(root))
    assert str(root) in str(info.value)


def test_a_class_missing_from_val_is_refused(tmp_path):
    write_image_folder(tmp_path / "tv" / "train")
    write_image_folder(tmp_path / "tv" / "val", per_class=1)
    for image in (tmp_path / "tv" / "val" / "dog").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="dog: class folder holds 0 images"):
        data.open_source(str(tmp_path / "tv"))


def test_loader_label_out_of_range_names_the_example(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    images = data.image_folder(root)
    with pytest.raises(DataError, match=r"dog.*label 1 is outside 0..0"):
        Loader(images, Preprocess(16, 3), batch_size=4, num_classes=1)


def test_loader_batches_are_seeded_and_identical_for_every_consumer(tmp_path):
    split = data.open_source(str(write_image_folder(tmp_path / "imgs", per_class=6)))
    prep = Preprocess(16, 3, "imagenet")

    def loader(seed=0, augment=("crop", "flip")):
        return Loader(split.train, prep, batch_size=5, shuffle=True, augment=augment, seed=seed, num_classes=3)

    first, second = list(loader().batches(1)), list(loader().batches(1))  # e.g. torch's pass, keras' pass
    assert len(first) == len(loader()) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        assert x1.dtype == np.float32 and x1.shape[1:] == (3, 16, 16) and y1.dtype == np.int64
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert sorted(np.concatenate([y for _, y in first]).tolist()) == sorted(split.train.labels.tolist())
    assert not np.array_equal(loader().order(1), loader().order(2))  # a new order each epoch
    assert not np.array_equal(loader().order(1), loader(seed=1).order(1))
    plain = Loader(split.train, prep, batch_size=5, shuffle=True, seed=0)
    assert np.array_equal(plain.order(1), loader().order(1))  # augmentation does not change the order
    assert not np.array_equal(next(plain.batches(1))[0], first[0][0])  # but it changes the pixels


def test_seeded_flip_mirrors_and_crop_stays_inside():
    image = np.zeros((8, 8, 1), np.uint8)
    image[:, :2] = 255  # bright left edge
    images = data.ArrayImages(np.repeat(image[None], 16, axis=0), np.zeros(16), ["a"], "test")
    prep = Preprocess(8, 1, "unit")
    x, _ = next(Loader(images, prep, batch_size=16, augment=("flip",), seed=0).batches(0))
    flipped = x[:, 0, :, -1].mean(axis=1) > 0.5
    assert 0 < flipped.sum() < 16  # a seeded coin per example
    np.testing.assert_array_equal(x[flipped], x[~flipped][:1, :, :, ::-1].repeat(flipped.sum(), axis=0))
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = data.random_resized_box(40, 30, rng)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
        assert 3 / 4 - 0.1 <= (right - left) / (bottom - top) <= 4 / 3 + 0.1


def test_embedded_digits_resized_for_lenet_and_for_rgb_models():
    pytest.importorskip("sklearn")
    split = data.open_source("digits", seed=0)
    assert (len(split.train), len(split.test)) == (1438, 359)
    assert set(split.train.labels.tolist()) == set(range(10))
    x, y = next(Loader(split.train, Preprocess(28, 1), batch_size=8).batches(0))
    assert x.shape == (8, 1, 28, 28) and -1 <= x.min() < x.max() <= 1
    x3, _ = next(Loader(split.train, Preprocess(32, 3), batch_size=8).batches(0))
    assert x3.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(x3[:, 0], x3[:, 2])  # gray replicated to three channels
    limited = data.open_source("digits", limit=50)
    assert (len(limited.train), len(limited.test)) == (50, 50)


# --- predict --------------------------------------------------------------------------

def test_predict_agrees_across_frameworks(tmp_path, capsys):
    import torch
    from PIL import Image

    import parity
    torch.manual_seed(0)
    state = parity.state_dict(parity.build("lenet", num_classes=3))
    state["classifier.4.bias"] = np.array([0.0, 0.5, -0.5], np.float32)  # a clear, non-uniform ranking
    weights = tmp_path / "lenet3.safetensors"
    parity.save_state(state, weights, Preprocess(28, 1, "half").to_metadata())
    data.write_class_indices(["ant", "bee", "cow"], tmp_path / "class_indices.json")
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate((28, 40)):
        images.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images[-1])
    out = tmp_path / "pred.json"
    from parity.train import commands
    code = run_command(commands, ["predict", "lenet", *map(str, images), "--weights", str(weights), "--classes",
                    str(tmp_path / "class_indices.json"), "--top", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["agree"] and result["frameworks"] == ["torch", "keras", "tf"]
    assert result["preprocess"] == {"size": "28", "channels": "1", "normalize": "half"}  # from the file's metadata
    for image in result["images"]:
        tops = image["top"]
        assert [t["class"] for t in tops["torch"]] == [t["class"] for t in tops["keras"]] == \
               [t["class"] for t in tops["tf"]] and tops["torch"][0]["class"] == "bee"
        assert image["max_prob_diff"] < 1e-5
    assert [image["preprocessing"].split(", normalized")[0] for image in result["images"]] == \
        ["kept 28x28, RGB -> grayscale", "resized 40x40 -> 28x28, RGB -> grayscale"]
    assert "agree" in capsys.readouterr().out

    weights_10 = tmp_path / "lenet10.safetensors"  # no metadata, no class file: 10 classes found in the head
    parity.save_state(parity.state_dict(parity.build("lenet")), weights_10)
    from parity.train.predict import predict
    results, prep, classes = predict("lenet", images[:1], weights_10, frameworks=["torch", "tf"], top=3)
    assert classes == [str(i) for i in range(10)] and results[0].agree and prep.normalize == "half"
    with pytest.raises(DataError, match="notes.txt"):
        (tmp_path / "notes.txt").write_text("x")
        predict("lenet", [tmp_path / "notes.txt"], weights_10, frameworks=["torch"])


# --- train and finetune ---------------------------------------------------------------

def test_train_lenet_on_digits_three_frameworks_and_resume(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from safetensors import safe_open

    from parity.train import runs as train_runs
    from parity.cli import main
    out = tmp_path / "run"
    argv = ["train", "lenet", "--frameworks", "torch,keras,tf", "--epochs", "1", "--limit", "96", "--batch", "32",
            "--out", str(out), "--control"]
    assert main(argv) == 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["epochs_done"] == 1
    curves = saved["curves"]
    assert [len(curves[f]["step_loss"]) for f in ("torch", "keras", "tf")] == [3, 3, 3]
    for f in ("keras", "tf", "torch-aa"):  # same start (up to rounding), same batches: the same losses
        np.testing.assert_allclose(curves[f]["step_loss"], curves["torch"]["step_loss"], rtol=1e-4)
        assert saved["agreement"][f]["max_step_loss_diff"] < 1e-4 and curves[f]["weight_diff"] < 1e-3
    for f, native in train_runs.NATIVE_FILES.items():
        assert (out / f / native).exists() and (out / f / "last.safetensors").exists()
        with safe_open(str(out / f / "best.safetensors"), "np") as file:
            meta = file.metadata()
        assert meta["framework"] == f and meta["size"] == "28" and json.loads(meta["classes"])[3] == "3"
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and json.loads((out / "curves.json").read_text())
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left behind

    assert main(argv) == 2 and "pass --resume" in " ".join(capsys.readouterr().err.split())
    assert main([*argv[:4], "--epochs", "2", *argv[6:], "--resume"]) == 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["epochs_done"] == 2 and len(saved["curves"]["tf"]["step_loss"]) == 6
    assert [e["epoch"] for e in saved["curves"]["torch"]["epochs"]] == [1, 2]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_is_exact_two_plus_two_epochs_end_where_four_do(tmp_path, optimizer):
    """The optimizer state (Adam moments and step count, SGD momentum) is saved with every
    epoch and restored by --resume. Measured on this test's runs: resumed vs uninterrupted
    weights 0 (bit for bit) in every framework, Adam and SGD; with the optimizer state zeroed
    on resume (what --resume did before) 0.22 (Adam) and 0.24 (SGD) apart: the 1e-6 bound
    separates them by five orders of magnitude."""
    pytest.importorskip("sklearn")
    from parity.train import runs as train_runs
    from parity.cli import main
    from parity.io import load_state, save_state
    common = ["train", "lenet", "--frameworks", "torch,keras,tf", "--limit", "64", "--batch", "32",
              "--optimizer", optimizer, "--lr", "0.05", "--momentum", "0.9"] if optimizer == "sgd" else \
             ["train", "lenet", "--frameworks", "torch,keras,tf", "--limit", "64", "--batch", "32"]
    assert main([*common, "--epochs", "4", "--out", str(tmp_path / "whole")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "resumed")]) == 0
    shutil.copytree(tmp_path / "resumed", tmp_path / "zeroed")
    assert main([*common, "--epochs", "4", "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    for f in ("torch", "keras", "tf"):  # the old behaviour, planted: optimizer state zero on resume
        path = tmp_path / "zeroed" / f / train_runs.OPTIMIZER_FILE
        save_state({k: np.zeros_like(v) for k, v in load_state(path).items()}, path, {"steps": "0"})
    assert main([*common, "--epochs", "4", "--out", str(tmp_path / "zeroed"), "--resume"]) == 0

    def error(run, f):
        state, whole = (load_state(tmp_path / r / f / "last.safetensors") for r in (run, "whole"))
        return max(float(np.abs(state[k] - v).max() / np.abs(v).max()) for k, v in whole.items() if np.abs(v).max())
    for f in ("torch", "keras", "tf"):
        assert error("resumed", f) <= 1e-6, (f, error("resumed", f))
        assert error("zeroed", f) > 1e-3, (f, error("zeroed", f))
    runs = {r: json.loads((tmp_path / r / "run.json").read_text())["curves"] for r in ("whole", "resumed")}
    for f in ("torch", "keras", "tf"):
        np.testing.assert_allclose(runs["resumed"][f]["step_loss"], runs["whole"][f]["step_loss"], rtol=1e-6)


def test_resume_without_optimizer_state_names_the_file(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from parity.cli import main
    argv = ["train", "lenet", "--frameworks", "torch", "--limit", "32", "--batch", "32", "--out", str(tmp_path)]
    assert main([*argv, "--epochs", "1"]) == 0
    (tmp_path / "torch" / "optimizer.safetensors").unlink()
    assert main([*argv, "--epochs", "2", "--resume"]) == 2
    assert f"{tmp_path / 'torch' / 'optimizer.safetensors'} is missing" in capsys.readouterr().err


def test_finetune_frozen_backbone_keeps_backbone_and_bn_statistics(tmp_path):
    import torch

    import parity
    from parity.train import commands
    torch.manual_seed(1)
    pretrained = parity.state_dict(parity.build("resnet18"))  # 1000 classes, as torchvision's
    torch.save({k: torch.from_numpy(v) for k, v in pretrained.items()}, tmp_path / "resnet18.pth")
    images = write_image_folder(tmp_path / "imgs", per_class=3, size=32)
    out = tmp_path / "ft"
    assert run_command(commands, ["finetune", "resnet18", "--weights", str(tmp_path / "resnet18.pth"),
                                  "--classes", "3", "--freeze-backbone", "--data", str(images), "--size", "32",
                                  "--epochs", "1", "--batch", "4", "--lr", "0.01", "--out", str(out)]) == 0
    for f in ("torch", "keras", "tf"):
        state = parity.load_state(out / f / "last.safetensors")
        assert state["fc.weight"].shape == (3, 512)
        moved = [k for k, v in state.items() if not k.startswith("fc.") and not np.array_equal(v, pretrained[k])]
        assert not moved, f"{f}: frozen backbone changed: {moved[:5]}"
    first = {f: parity.load_state(out / f / "last.safetensors")["fc.weight"] for f in ("torch", "keras", "tf")}
    np.testing.assert_allclose(first["keras"], first["torch"], atol=1e-5)
    np.testing.assert_allclose(first["tf"], first["torch"], atol=1e-5)
    with pytest.raises(ValueError, match="has 3"):
        run_command(commands, ["finetune", "resnet18", "--weights", str(tmp_path / "resnet18.pth"), "--classes", "5",
                               "--data", str(images), "--size", "32", "--out", str(tmp_path / "ft5")])
