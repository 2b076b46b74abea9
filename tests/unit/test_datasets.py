"""deploykit data: the built-in sets written as folders and read back through the one folder reader users' data
goes through (quantize/calib.py). Real files, real scikit-learn / matplotlib images."""

import json

import numpy as np
import pytest

from deploykit.cli import cli
from deploykit.datasets.builtin import split_indices, write_digits, write_photos
from deploykit.quantize.calib import Preprocess, list_images, load_images, load_labelled
from tests.conftest import assert_clean_error


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "digits"
    return out, write_digits(out, size=16, seed=3)


def test_the_split_is_disjoint_covers_every_image_and_follows_the_seed():
    train, val = split_indices(1797, 0.2, seed=0)
    assert len(set(train) & set(val)) == 0 and sorted([*train, *val]) == list(range(1797))
    assert len(val) == 359
    again = split_indices(1797, 0.2, seed=0)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, split_indices(1797, 0.2, seed=1)[1])


def test_digits_tree_holds_the_split_it_records_and_reads_back_labelled(digits):
    from sklearn.datasets import load_digits

    out, desc = digits
    target = load_digits().target
    for part in ("train", "val"):
        files = sorted((out / part).rglob("*.png"))
        assert len(files) == desc["counts"][part]
        indices = sorted(int(f.stem) for f in files)
        assert indices == desc["split"][part]  # the files are exactly the recorded members
        assert all(int(f.parent.name) == target[int(f.stem)] for f in files)  # each in its class folder
    assert not set(desc["split"]["train"]) & set(desc["split"]["val"])  # the held-out images are never training
    assert json.loads((out / "dataset.json").read_text())["split"] == desc["split"]
    pp = Preprocess(resolution=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
    val = load_labelled(out / "val", pp)
    assert val.classes == [str(c) for c in range(10)] and val.x.shape == (desc["counts"]["val"], 3, 16, 16)
    assert [int(f.split("/")[0]) for f in val.files] == list(val.labels)


def test_an_existing_folder_is_refused_unless_forced(tmp_path, cli_runner):
    out = tmp_path / "d"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert_clean_error(cli_runner.invoke(cli, ["data", "digits", "-o", str(out)]), 2, "already exists", "--force")
    assert (out / "mine.txt").read_text() == "keep"
    r = cli_runner.invoke(cli, ["data", "digits", "-o", str(out), "--size", "8", "--force"])
    assert r.exit_code == 0, r.output
    assert not (out / "mine.txt").exists() and (out / "val").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dk-")]  # no temporary folder left


def test_photos_are_deterministic_crops_read_as_calibration_images(tmp_path):
    a = write_photos(tmp_path / "a", count=6, size=32, seed=1)
    b = write_photos(tmp_path / "b", count=6, size=32, seed=1)
    assert a["crops"] == b["crops"] and {s["file"] for s in a["sources"]} >= {"china.jpg", "flower.jpg"}
    for f in ("photo-0000.png", "photo-0005.png"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    images, skipped = list_images(tmp_path / "a")
    assert len(images) == 6 and skipped == 1  # dataset.json beside them is not an image
    pp = Preprocess(resolution=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=1.0)
    x = load_images(tmp_path / "a", pp, None).x
    assert x.shape == (6, 3, 32, 32) and float(x.std()) > 0.1  # real photos, not a constant


def test_eval_labels_map_imagenet_synsets_and_refuse_a_mismatch():
    from deploykit.bench.accuracy import imagenet_synsets, model_labels
    from deploykit.core.errors import InputError

    ids = imagenet_synsets()
    assert len(ids) == 1000 and ids[0] == "n01440764"
    classes = [ids[7], ids[500]]  # a subset of ImageNet's classes, as a user's val folder often is
    mapped, how = model_labels(classes, np.array([0, 1, 1]), 1000, "val", "tv:resnet18")
    assert how == "imagenet-synsets" and list(mapped) == [7, 500, 500]
    same, how = model_labels([str(c) for c in range(10)], np.array([3, 9]), 10, "digits/val", "resnet18")
    assert how == "imagefolder" and list(same) == [3, 9]
    with pytest.raises(InputError, match="has 10 classes .* but resnet18 outputs 1000"):
        model_labels([str(c) for c in range(10)], np.array([0]), 1000, "digits/val", "resnet18")
    with pytest.raises(InputError, match="not one of ImageNet-1k's"):
        model_labels(["n99999999"], np.array([0]), 1000, "val", "m")


def test_training_refuses_a_val_split_holding_training_images_by_content(digits, tmp_path):
    """A train image copied into val/ under another name: training stops before it starts, naming the copy."""
    import shutil

    from deploykit.core.errors import InputError
    from deploykit.train.classifier import TrainConfig, train

    out, _ = digits
    leaky = tmp_path / "leaky"
    shutil.copytree(out, leaky)
    src = sorted((leaky / "train" / "4").glob("*.png"))[0]
    shutil.copy(src, leaky / "val" / "4" / "renamed.png")
    with pytest.raises(InputError, match=r"1 images of val/ are also in train/ \(e.g. val/4/renamed.png\)"):
        train(TrainConfig(model="resnet18", data=str(leaky), resolution=16, epochs=1, seed=0, threads=1),
              tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()


def test_held_out_images_are_checked_against_calibration_digests_and_a_broken_record_is_no_check():
    """refuse_overlap: an image whose digest calibrated the model is refused with one line naming it; a manifest
    whose digests are not a list of strings (hand-edited, damaged) checks nothing rather than crashing."""
    from deploykit.core.errors import InputError
    from deploykit.quantize.calib import refuse_overlap, synthetic

    imgs = synthetic((3, 8, 8), 4)
    with pytest.raises(InputError, match=r"--eval-data: 1 of its 4 images calibrated this int8 model \(e.g. "
                                         r"synthetic-2\)"):
        refuse_overlap(imgs, ["0" * 16, imgs.digests()[2]])
    for broken in (None, [], 5, "abc", [1, 2.5, None]):
        refuse_overlap(imgs, broken)
