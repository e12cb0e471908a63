"""Hostile data inputs: every bad dataset is refused at start in one line naming the file or split; nothing is lost
(no task trains or is scored on nothing) and nothing is said twice (issue 33, "Nothing lost, nothing stale");
a dataset file of wrong values (normals, images, depth, labels) is one line naming the file, what it holds and
what was expected, also when it stops training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import one_line_error
from test_data_folder import H, W, write_folder
from test_readers import write_dataset

from auxnas.cli import main
from auxnas.data import FolderImages
from auxnas.data.mtan import NpyFolders, folder_layout


def _train(root: Path, run: Path, *overrides: str, name: str = "nyuv2_mtan", aux: str = "depth") -> list[str]:
    """The command line of a one-epoch run on the dataset at ``root``: primary seg, one auxiliary task."""
    return ["train", "quickstart", f"data.name={name}", f"data.root={root}", "tasks.primary=seg", f"tasks.aux=[{aux}]",
            "method.name=aux_head", "data.batch_size=2", "train.epochs=1", f"out_dir={run}", "--quiet", *overrides]


def _camera_facing_normals(rows: int = H, cols: int = W) -> np.ndarray:
    """Unit normals of a room seen from inside (x right, y down, z forward): front wall, right wall, floor, in bands;
    the top-left 4 x 4 corner invalid (zero)."""
    normals = np.zeros((rows, cols, 3), np.float32)
    normals[: rows // 3, :, 2] = -1  # front wall, facing the camera
    normals[rows // 3: 2 * rows // 3, :, 0] = -1  # right wall, facing left
    normals[2 * rows // 3:, :, 1] = -1  # floor, facing up
    normals[:4, :4] = 0
    return normals


# -- defect 1: normals that are not unit vectors, and a task with no valid pixel in a split


def test_mtan_normals_far_from_unit_are_refused_naming_the_file(tmp_path):
    root = write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")
    path = root / "train" / "normal" / "1.npy"
    np.save(path, 0.3 * np.load(path))  # every pixel shorter than MIN_NORMAL_NORM: all invalid, NaN metrics
    dataset = NpyFolders(root, "train", folder_layout("nyuv2_mtan"))
    dataset[0]
    with pytest.raises(ValueError, match=r"normal/1\.npy: normals must be unit vectors \(0 = invalid\), but 752 of "
                                         r"the 752 valid vectors are off norm 1 by more than 0\.1 "
                                         r"\(norms 0\.3\.\.0\.3\)$") as info:
        dataset[1]
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_mtan_normals_blended_at_a_minority_of_pixels_are_read(tmp_path):
    """A resampled release blends unit vectors at surface borders (shorter ones): a minority of them is accepted."""
    root = write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")
    path = root / "train" / "normal" / "1.npy"
    normals = np.load(path)
    normals[10:16] *= 0.7  # 6 of the 24 rows: a border's blends
    np.save(path, normals)
    sample = NpyFolders(root, "train", folder_layout("nyuv2_mtan"))[1]
    assert sample["normal"].shape == (3, H, W)


def test_a_task_without_a_valid_pixel_in_a_split_is_refused_at_start(tmp_path, capsys):
    root = write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")
    for path in (root / "val" / "normal").iterdir():  # the val folder: the test split
        np.save(path, np.zeros_like(np.load(path)))  # every pixel invalid: each file is fine, the split is not
    run = tmp_path / "run"
    err = one_line_error(capsys, _train(root, run, aux="normal"))
    assert f"{root / 'val'}: the test split has no normal label (none of its 3 images has one" in err
    assert "remove it from tasks.aux" in err
    assert not (run / "last.pt").exists()  # refused before training


# -- defect 2: normals stored as (n + 1) / 2, one rule for both readers


def test_half_encoded_normals_are_refused_alike_by_both_readers(tmp_path):
    """Stored as (n + 1) / 2, camera-facing walls and floor have norm 0.71, every norm <= 1.1: both readers refuse
    them, with the same advice."""
    normals = _camera_facing_normals()
    encoded = np.where(normals.any(axis=-1, keepdims=True), (normals + 1) / 2, 0).astype(np.float32)
    mtan = write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")
    np.save(mtan / "train" / "normal" / "1.npy", encoded)
    folder = write_folder(tmp_path / "mine", npy=True, splits={"train": 2, "test": 1})
    np.save(folder / "train" / "normal" / "1.npy", encoded)
    advice = "; no component is negative: stored as (n + 1) / 2? store the unit vectors, 2 * v - 1"
    readers = [(NpyFolders(mtan, "train", folder_layout("nyuv2_mtan")), mtan / "train" / "normal" / "1.npy"),
               (FolderImages(folder, "train"), folder / "train" / "normal" / "1.npy")]
    for dataset, path in readers:
        with pytest.raises(ValueError) as info:
            dataset[1]
        message = str(info.value)
        assert message.startswith(f"{path}: ") and message.endswith(advice) and "\n" not in message
    np.save(mtan / "train" / "normal" / "1.npy", normals)  # the unit vectors, 2 * v - 1, are read
    assert NpyFolders(mtan, "train", folder_layout("nyuv2_mtan"))[1]["normal"].shape == (3, H, W)


# -- defect 3: every split needs primary labels, for every reader


@pytest.mark.parametrize(("folder", "split"), [("train", "training"), ("val", "test")])
def test_mtan_labels_all_missing_are_refused_at_start(tmp_path, capsys, folder, split):
    """Labels all -1 used to train to the end and report a diverged run ("lower train.lr"), or NaN test metrics."""
    root = write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")
    for path in (root / folder / "label").iterdir():
        np.save(path, np.full_like(np.load(path), -1))
    run = tmp_path / "run"
    err = one_line_error(capsys, _train(root, run))
    assert f"{root / folder}: the {split} split has no seg label" in err and "add seg labels" in err
    assert "diverged" not in err and not (run / "last.pt").exists()


def test_a_folder_test_split_without_primary_labels_is_refused_at_start(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 8, "val": 4, "test": 4})
    shutil.rmtree(root / "test" / "seg")
    (root / "test" / "seg").mkdir()
    run = tmp_path / "run"
    err = one_line_error(capsys, _train(root, run, name="folder", aux="normal"))
    assert f"{root / 'test'}: the test split has no seg label (none of its 4 images has one" in err
    assert not (run / "last.pt").exists()


def test_a_val_folder_without_the_primary_label_is_refused_before_training(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 8, "val": 4, "test": 4})
    shutil.rmtree(root / "val" / "seg")
    (root / "val" / "seg").mkdir()
    run = tmp_path / "run"
    err = one_line_error(capsys, ["train", "demo", "data.name=folder", f"data.root={root}", "data.batch_size=4",
                                  "tasks.primary=seg", "tasks.aux=[normal]", "method.name=aux_head",
                                  "model.backbone=tiny_resnet", "train.epochs=1", f"out_dir={run}", "--quiet"])
    assert f"{root / 'val'}: the validation split has no seg label" in err and "add seg labels" in err
    assert not (run / "last.pt").exists()  # refused before training


# -- defect 4: the uint8 notice, once per folder, one plain line


@pytest.mark.parametrize("workers", [0, 2])
def test_uint8_images_are_said_once_per_folder_in_one_line(tmp_path, capsys, workers):
    root = write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")
    for path in root.glob("*/image/*.npy"):
        np.save(path, np.round(np.load(path) * 255).astype(np.uint8))
    assert main(_train(root, tmp_path / "run", f"data.num_workers={workers}")) == 0
    out, err = capsys.readouterr()
    notice = "8-bit (uint8) .npy images, read as value / 255"
    assert [line for line in err.splitlines() if notice in line] == [f"{root / 'train' / 'image'}: {notice}",
                                                                      f"{root / 'val' / 'image'}: {notice}"]
    assert "Warning" not in err and notice not in out  # no source line; stdout stays the run's own


# -- dataset files whose values are wrong: one line naming the file, what it holds and what was expected


def _mtan(tmp_path: Path, name: str = "nyuv2_mtan") -> Path:
    return write_dataset(tmp_path / name, name)


def _edit(root: Path, folder: str, change, index: int = 1) -> None:
    """Replace ``root/train/folder/{index}.npy`` by ``change(its array)``."""
    path = root / "train" / folder / f"{index}.npy"
    np.save(path, change(np.load(path)))


def _nan_at(array: np.ndarray, value: float = np.nan) -> np.ndarray:
    array = array.copy()
    array[5, 6] = value
    return array


MTAN_VALUES = [
    ("normals stored as (n + 1) / 2", "normal", lambda n: (n + 1) / 2,
     r"normal/1\.npy: \d+ vectors are neither unit vectors nor zero \(invalid\): norms 0\.\d+\.\.1\.\d+, expected "
     r"0\.\.1\.1 \(e\.g\. pixel .*\); no component is negative: stored as \(n \+ 1\) / 2\? store the unit vectors, "
     r"2 \* v - 1$"),
    ("normals of norm 3", "normal", lambda n: 3 * n, r"normal/1\.npy: 752 vectors are neither unit vectors nor zero "
     r"\(invalid\): norms 3\.\.3, expected 0\.\.1\.1 \(e\.g\. pixel \(0, 4\) of norm 3\.000\)$"),
    ("NaN normals", "normal", _nan_at, r"normal/1\.npy: normals must be finite, got 1 NaN or infinite vectors; mark "
     r"invalid pixels with the zero vector$"),
    ("image in 0..255", "image", lambda x: x * 255, r"image/1\.npy: image values must be in \[0, 1\], got values in "
     r"\[0\.\d+, 25\d(\.\d+)?\]; 0\.\.255 values\? divide them by 255, or store uint8$"),
    ("image normalised", "image", lambda x: (x - 0.45) / 0.225, r"image/1\.npy: image values must be in \[0, 1\], got "
     r"values in \[-\d\.\d+, \d\.\d+\]; ImageNet-normalised\? store the \[0, 1\] image, auxnas normalises it$"),
    ("NaN depth", "depth", _nan_at, r"depth/1\.npy: depth must be finite and >= 0 \(0 = invalid\), got 1 NaN or "
     r"infinite values; mark invalid pixels with 0$"),
    ("negative depth", "depth", lambda d: d - 1, r"depth/1\.npy: depth must be finite and >= 0 \(0 = invalid\), got "
     r"values in \[-1, 8\.\d+\]; mark invalid pixels with 0$"),
    ("fractional labels", "label", lambda y: np.where(y == 3, 3.6, y), r"label/1\.npy: labels must be -1 \(ignore\) "
     r"or classes 0\.\.12, got non-integer values, e\.g\. 3\.6 at pixel \(\d+, \d+\)$"),
    ("NaN labels", "label", _nan_at, r"label/1\.npy: labels must be -1 \(ignore\) or classes 0\.\.12, got 1 NaN or "
     r"infinite values$"),
    ("normals channels first", "normal", lambda n: np.moveaxis(n, -1, 0), r"normal/1\.npy: expected shape "
     r"\(24, 32, 3\), got \(3, 24, 32\): its channels come first; store it channels last, \(H, W, C\) = "
     r"\(24, 32, 3\)$"),
]


@pytest.mark.parametrize(("folder", "change", "message"), [c[1:] for c in MTAN_VALUES], ids=[c[0] for c in MTAN_VALUES])
def test_mtan_files_of_wrong_values_are_one_line(tmp_path, folder, change, message):
    root = _mtan(tmp_path)
    _edit(root, folder, change)
    dataset = NpyFolders(root, "train", folder_layout("nyuv2_mtan"))
    dataset[0]  # the other files are fine
    with pytest.raises(ValueError, match=message) as info:
        dataset[1]
    assert "\n" not in str(info.value) and str(root / "train" / folder / "1.npy") in str(info.value)


def test_cityscapes_nan_disparity_is_one_line(tmp_path):
    root = _mtan(tmp_path, "cityscapes")
    _edit(root, "depth", lambda d: _nan_at(d, np.inf))
    with pytest.raises(ValueError, match=r"depth/1\.npy: disparity must be finite and >= 0 \(0 = invalid\), got 1 NaN "
                                         r"or infinite values; mark invalid pixels with 0$"):
        NpyFolders(root, "train", folder_layout("cityscapes"))[1]


def test_an_image_stored_channels_first_says_so(tmp_path):
    root = _mtan(tmp_path)
    for i in range(6):
        _edit(root, "image", lambda x: np.moveaxis(x, -1, 0), i)
    # it used to say "expected shape (3, 24, 3), got (3, 24, 32)"
    with pytest.raises(ValueError, match=r"train/image/0\.npy: expected an image of shape \(H, W, 3\), got "
                                         r"\(3, 24, 32\): its channels come first; store it channels last, "
                                         r"\(H, W, C\) = \(24, 32, 3\)$"):
        NpyFolders(root, "train", folder_layout("nyuv2_mtan"))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_dataset_file_stops_training_with_one_line(tmp_path, capsys, workers):
    """Also when a DataLoader worker reads the file (torch re-raises its error with the worker's traceback)."""
    root = _mtan(tmp_path)
    for i in range(6):
        _edit(root, "depth", _nan_at, i)
    err = one_line_error(capsys, ["train", "quickstart", "data.name=nyuv2_mtan", f"data.root={root}",
                                  "tasks.primary=seg", "tasks.aux=[depth]", "method.name=aux_head",
                                  f"data.num_workers={workers}", "data.batch_size=2", "train.epochs=1",
                                  f"out_dir={tmp_path / 'run'}", "--quiet"])
    assert "depth must be finite and >= 0 (0 = invalid), got 1 NaN or infinite values" in err
    assert str(root / "train" / "depth") in err
