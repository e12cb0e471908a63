"""Readers of the MTAN-preprocessed NYUv2 and CityScapes folders, on small fixtures in the on-disk layout."""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from auxnas.cli import main
from auxnas.config import ConfigError, DataConfig, config_from_dict
from auxnas.config.validate import validate
from auxnas.data import NpyFolders, PartiallyLabelled, RandomTargets, build_splits
from auxnas.data.files import resize_nearest
from auxnas.data.mtan import folder_layout
from auxnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SCALES, augment, hflip, resize_sample, scale_crop
from auxnas.tasks import Depth, SurfaceNormals
from auxnas.train import fit

H, W = 24, 32


def write_dataset(root: Path, name: str, num_train: int = 6, num_val: int = 3, size: tuple[int, int] = (H, W),
                  classes: int = 7) -> Path:
    """Random arrays in the MTAN layout, with -1 labels, 0 depth / disparity and 0 normals in the top-left corner."""
    rng = np.random.default_rng(0)
    h, w = size
    folders = ["image", "label", "depth", "normal"] if name == "nyuv2_mtan" else ["image", f"label_{classes}", "depth"]
    num_classes = 13 if name == "nyuv2_mtan" else classes
    for split, count in (("train", num_train), ("val", num_val)):
        for folder in folders:
            (root / split / folder).mkdir(parents=True)
        for i in range(count):
            label = rng.integers(0, num_classes, (h, w)).astype(np.float32)
            label[:4, :4] = -1
            depth = rng.uniform(0.5, 10.0, (h, w, 1)).astype(np.float32)
            depth[:4, :4] = 0
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[:4, :4] = 0
            arrays = {"image": rng.uniform(0, 1, (h, w, 3)).astype(np.float32), folders[1]: label, "depth": depth,
                      "normal": normal}
            for folder in folders:
                np.save(root / split / folder / f"{i}.npy", arrays[folder])
    return root


@pytest.fixture
def nyuv2(tmp_path) -> Path:
    return write_dataset(tmp_path / "nyuv2", "nyuv2_mtan")


@pytest.fixture
def cityscapes(tmp_path) -> Path:
    return write_dataset(tmp_path / "cityscapes", "cityscapes")


def test_nyuv2_sample_shapes_dtypes_and_invalid_markers(nyuv2):
    dataset = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))
    assert len(dataset) == 6 and dataset.size == (H, W) and dataset.num_classes == {"seg": 13}
    sample = dataset[2]
    assert set(sample) == {"image", "seg", "depth", "normal"}
    assert sample["image"].shape == (3, H, W) and sample["image"].dtype == torch.float32
    raw = torch.from_numpy(np.load(nyuv2 / "train" / "image" / "2.npy")).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(sample["image"], (raw - mean) / std)
    assert sample["seg"].shape == (H, W) and sample["seg"].dtype == torch.int64
    assert (sample["seg"][:4, :4] == 255).all() and int(sample["seg"][4:].max()) < 13
    assert sample["depth"].shape == (1, H, W) and sample["depth"].dtype == torch.float32
    assert (sample["depth"][:, :4, :4] == 0).all() and (sample["depth"][:, 4:] > 0).all()
    assert sample["normal"].shape == (3, H, W)
    assert (sample["normal"][:, :4, :4] == 0).all()


def test_cityscapes_sample_and_class_folders(tmp_path):
    root = write_dataset(tmp_path / "cs", "cityscapes", classes=19)
    layout = folder_layout("cityscapes", 19)
    sample = NpyFolders(root, "val", layout)[0]
    assert set(sample) == {"image", "seg", "disparity"}
    assert sample["disparity"].shape == (1, H, W) and (sample["disparity"][:, :4, :4] == 0).all()
    assert (sample["seg"][:4, :4] == 255).all() and int(sample["seg"][sample["seg"] != 255].max()) < 19
    with pytest.raises(FileNotFoundError, match=r"label_7: missing folder"):
        NpyFolders(root, "val", folder_layout("cityscapes", 7))


def test_zero_depth_and_zero_normals_are_invalid_for_the_tasks(nyuv2):
    sample = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))[0]
    valid = H * W - 16
    depth, normal = sample["depth"][None], sample["normal"][None]
    depth_metric = Depth().new_metric()
    depth_metric.update(torch.zeros_like(depth), depth)
    assert depth_metric.count == valid
    task = SurfaceNormals()
    metric = task.new_metric()
    metric.update(normal.clone(), normal)
    assert metric.count == valid and metric.compute()["mean_angle"] < 0.1
    # the prediction at invalid pixels changes neither the loss nor the metric
    pred = normal.clone()
    pred[..., :4, :4] = torch.randn(3, 4, 4)
    assert float(task.loss(pred, normal)) == pytest.approx(0.0, abs=1e-6)


def test_hflip_mirrors_labels_and_negates_normal_x(nyuv2):
    sample = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))[1]
    flipped = hflip(sample)
    assert torch.equal(flipped["seg"], sample["seg"].flip(-1))
    assert torch.equal(flipped["depth"], sample["depth"].flip(-1))
    assert torch.equal(flipped["image"], sample["image"].flip(-1))
    assert torch.equal(flipped["normal"][0], -sample["normal"][0].flip(-1))
    assert torch.equal(flipped["normal"][1:], sample["normal"][1:].flip(-1))
    assert (flipped["seg"][:4, -4:] == 255).all() and (flipped["normal"][:, :4, -4:] == 0).all()


def test_scale_crop_divides_depth_multiplies_disparity_and_keeps_labels():
    image = torch.rand(3, H, W)
    depth = torch.full((1, H, W), 4.0)
    depth[:, :, :8] = 0
    normal = torch.nn.functional.normalize(torch.tensor([0.3, -0.2, 1.0]), dim=0)[:, None, None].expand(3, H, W)
    seg = torch.randint(0, 5, (H, W))
    sample = {"image": image, "seg": seg, "depth": depth, "disparity": depth.clone(), "normal": normal.clone()}
    out = scale_crop(sample, 1.5, top=0.0, left=0.0)
    assert all(out[k].shape == sample[k].shape for k in sample) and out["seg"].dtype == torch.int64
    assert out["depth"].unique().tolist() == pytest.approx([0.0, 4.0 / 1.5])
    assert out["disparity"].unique().tolist() == pytest.approx([0.0, 4.0 * 1.5])
    assert torch.equal(out["normal"], normal)  # normals are not rescaled
    assert set(out["seg"].unique().tolist()) <= set(seg.unique().tolist())  # nearest: no blended classes
    assert (out["depth"][:, :, :10] == 0).all()  # the invalid band widens with the zoom, never blends
    # the zoom keeps the top-left corner: pixel (0, 0) keeps its label
    assert out["seg"][0, 0] == seg[0, 0]


def test_augment_keeps_shapes_and_draws_every_scale():
    sample = {"image": torch.rand(3, H, W), "seg": torch.zeros(H, W, dtype=torch.int64),
              "depth": torch.full((1, H, W), 3.0)}
    seen = set()
    for seed in range(40):
        out = augment(sample, torch.Generator().manual_seed(seed))
        assert out["image"].shape == (3, H, W) and out["seg"].shape == (H, W)
        seen.add(round(3.0 / float(out["depth"].max()), 2))
    assert seen == {1.0, 1.2, 1.5}


def test_build_splits_counts_and_wrappers(nyuv2, capsys):
    cfg = DataConfig(name="nyuv2_mtan", root=str(nyuv2), val_fraction=0.34, random_targets=["depth"],
                     labelled_fraction={"seg": 0.5})
    splits = build_splits(cfg, progress=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2, 3)
    assert splits.num_classes == {"seg": 13}
    assert "4 train + 2 validation" in capsys.readouterr().out
    assert isinstance(splits.train, PartiallyLabelled) and isinstance(splits.train.dataset, RandomTargets)
    assert splits.train_label_counts(["seg", "depth"]) == {"seg": 2, "depth": 4}
    assert splits.train.dataset.dataset.augment and not splits.val.augment and not splits.test.augment
    assert set(splits.val.indices.tolist()).isdisjoint(splits.train.dataset.dataset.indices.tolist())
    assert splits.train[0]["depth"].shape == (1, H, W)


def test_errors_name_the_folder_or_file(tmp_path, nyuv2):
    layout = folder_layout("nyuv2_mtan")
    with pytest.raises(FileNotFoundError, match="data.root: .*nowhere is not a folder"):
        NpyFolders(tmp_path / "nowhere", "train", layout)
    with pytest.raises(ValueError, match="data.root: data.name=nyuv2_mtan needs"):
        build_splits(DataConfig(name="nyuv2_mtan"))

    (nyuv2 / "train" / "depth" / "3.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"train/depth/3\.npy: missing file"):
        NpyFolders(nyuv2, "train", layout)
    np.save(nyuv2 / "train" / "depth" / "3.npy", np.ones((10, 10), np.float32))
    shape_error = r"train/depth/3\.npy: expected shape \(24, 32, 1\) or \(24, 32\), got \(10, 10\)"
    with pytest.raises(ValueError, match=shape_error):
        NpyFolders(nyuv2, "train", layout)[3]

    path = nyuv2 / "train" / "normal" / "2.npy"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"train/normal/2\.npy: unreadable \.npy file"):
        NpyFolders(nyuv2, "train", layout)[2]

    np.save(nyuv2 / "train" / "label" / "1.npy", np.full((H, W), 13, np.float32))
    with pytest.raises(ValueError, match=r"train/label/1\.npy: labels must be -1 \(ignore\) or classes 0\.\.12"):
        NpyFolders(nyuv2, "train", layout)[1]

    np.save(nyuv2 / "val" / "image" / "0.npy", np.zeros((H, W + 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"val/image/0\.npy: expected an image of shape \(24, 32, 3\)"):
        build_splits(DataConfig(name="nyuv2_mtan", root=str(nyuv2)), progress=False)

    for folder in ("image", "label", "depth", "normal"):
        for file in (nyuv2 / "val" / folder).iterdir():
            file.unlink()
        (nyuv2 / "val" / folder).rmdir()
    with pytest.raises(FileNotFoundError, match=r"val/image: missing folder \(the nyuv2_mtan layout is"):
        NpyFolders(nyuv2, "val", layout)


def test_uint8_images_are_read_as_8_bit_and_said_once(nyuv2, capsys):
    for i in range(6):
        path = nyuv2 / "train" / "image" / f"{i}.npy"
        np.save(path, np.round(np.load(path) * 255).astype(np.uint8))
    dataset = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))
    samples = [dataset[i] for i in range(6)]
    assert capsys.readouterr().err.splitlines() == [f"{nyuv2 / 'train' / 'image'}: 8-bit (uint8) .npy images, read "
                                                    "as value / 255"]  # once per folder, not per file
    raw = torch.from_numpy(np.load(nyuv2 / "train" / "image" / "2.npy")).permute(2, 0, 1) / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(samples[2]["image"], (raw - mean) / std)


def test_values_are_checked_on_the_first_read_of_each_image_only(nyuv2):
    dataset = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))
    train = dataset.subset([0, 1, 2, 3], augment=True)
    train[1]
    assert dataset.checked.tolist() == [False, True, False, False, False, False]  # views share the record
    path = nyuv2 / "train" / "depth" / "1.npy"
    np.save(path, -np.load(path))
    train[1]  # checked already: read as it is (the file was changed after its first read)
    fresh = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))
    for _ in range(2):  # a new dataset checks again, and a failed check leaves the image unchecked
        with pytest.raises(ValueError, match=r"depth/1\.npy: depth must be finite and >= 0"):
            fresh[1]
    assert not fresh.checked.any()


def test_images_checked_in_dataloader_workers_stay_checked(nyuv2):
    dataset = NpyFolders(nyuv2, "train", folder_layout("nyuv2_mtan"))
    for _ in DataLoader(dataset.subset([0, 2, 4], augment=False), batch_size=1, num_workers=2):
        pass
    # the workers' record is the dataset's: the next epoch's workers skip these checks
    assert dataset.checked.tolist() == [True, False, True, False, True, False]


def test_documented_split_counts_follow_the_code():
    """docs/datasets.md's NYUv2 counts are those num_val_images gives (795 training-folder images, 654 test)."""
    from auxnas.data import num_val_images

    docs = (Path(__file__).parents[1] / "docs" / "datasets.md").read_text()
    counts = re.findall(r"With `data.val_fraction: 0.1`[,:][^.]*?(\d+) training, (\d+) validation and (\d+) test", docs)
    assert len(counts) == 2  # nyuv2_mtan and nyuv2_nddr
    val = num_val_images(795, 0.1)
    assert all(tuple(map(int, c)) == (795 - val, val, 654) for c in counts), counts


#: (source, target) sizes of a label resize: down by 4, 2 and 1.5 (the zoom's 1.5 in reverse), up by 1.5, 2
SIZES = [(64, 16), (32, 16), (48, 32), (32, 48), (16, 32), (21, 32), (512, 256)]


def _nearest_centres(source: int, target: int) -> list[set[int]]:
    """Per target pixel, the source pixels whose centres are nearest its centre (two at a tie), exactly."""
    out = []
    for i in range(target):
        centre = Fraction(2 * i + 1, 2) * Fraction(source, target)
        distances = {j: abs(centre - Fraction(2 * j + 1, 2)) for j in range(source)}
        best = min(distances.values())
        out.append({j for j, d in distances.items() if d == best})
    return out


@pytest.mark.parametrize(("source", "target"), SIZES)
def test_resized_labels_stay_aligned_with_the_image(source, target):
    """A label that is its column (row) index: after a resize, each pixel holds the label of the source pixel whose
    centre is nearest its own, and agrees within half a pixel with the bilinearly resized image of the same index."""
    columns = torch.arange(source, dtype=torch.float32).expand(source, source)
    sample = {"image": columns.expand(3, source, source).clone(), "seg": columns.long(), "depth": columns[None] + 1,
              "normal": torch.stack([columns, columns.T, columns]) + 1}
    out = resize_sample(sample, (target, target))
    nearest = _nearest_centres(source, target)
    seg, rows = out["seg"], out["normal"][1] - 1
    assert all(int(seg[0, c]) in nearest[c] for c in range(target)), seg[0].tolist()
    assert all(int(rows[r, 0]) in nearest[r] for r in range(target))
    assert torch.equal(out["depth"][0] - 1, seg.float()) and torch.equal(out["normal"][0] - 1, seg.float())
    interior = slice(2, target - 2)  # away from the borders the bilinear image of the ramp is the ramp
    assert (seg[:, interior].float() - out["image"][0][:, interior]).abs().max() <= 0.5 + 1e-4
    numpy_columns = resize_nearest(columns.long().numpy(), (target, target))  # the Taskonomy reader's resize
    assert np.array_equal(numpy_columns, seg.numpy())


@pytest.mark.parametrize("scale", SCALES[1:])
def test_zoomed_labels_stay_aligned_with_the_image(scale):
    size = 32
    columns = torch.arange(size, dtype=torch.float32).expand(size, size)
    sample = {"image": columns.expand(3, size, size).clone(), "seg": columns.long(), "depth": columns[None] + 1}
    out = scale_crop(sample, scale, top=0.5, left=0.5)
    crop = round(size / scale)
    first = round(0.5 * (size - crop))
    nearest = _nearest_centres(crop, size)
    assert all(int(out["seg"][0, c]) - first in nearest[c] for c in range(size)), out["seg"][0].tolist()
    assert torch.allclose(out["depth"][0] * scale - 1, out["seg"].float())  # depth / zoom, from the same pixels
    interior = slice(2, size - 2)
    assert (out["seg"][:, interior].float() - out["image"][0][:, interior]).abs().max() <= 0.5 + 1e-4


@pytest.mark.parametrize("overrides, message", [
    ({"tasks": {"primary": "seg", "aux": ["scene"]}},
     r"tasks.aux\[0\]: dataset nyuv2_mtan has no 'scene' targets; it provides seg, depth, normal"),
    ({"tasks": {"primary": "disparity"}}, "tasks.primary: dataset nyuv2_mtan has no 'disparity'"),
    ({"tasks": {"primary": "seg", "aux": ["layout"]}},
     r"tasks.aux\[0\]: dataset nyuv2_mtan has no 'layout' targets \(layout: the synthetic scenes' seg in 4 coarse "),
    ({"tasks": {"primary": "seg", "aux": ["depth"]}, "data": {"random_targets": ["object"]}},
     r"data.random_targets\[0\]: dataset nyuv2_mtan"),
    ({"tasks": {"primary": "seg"}, "model": {"backbone": "tiny_vit"}}, "model.backbone: tiny_vit needs square"),
    ({"tasks": {"primary": "seg"}, "data": {"root": None}}, "data.root: data.name=nyuv2_mtan needs"),
    ({"tasks": {"primary": "seg"}, "data": {"cityscapes_classes": 8}}, "data.cityscapes_classes: expected one of"),
])
def test_config_checks_of_real_datasets(overrides, message):
    method = {"method": {"name": "aux_head"}} if overrides["tasks"].get("aux") else {}
    data = {**overrides, **method, "data": {"name": "nyuv2_mtan", "root": "/data/nyuv2", **overrides.get("data", {})}}
    with pytest.raises(ConfigError, match=message):
        validate(config_from_dict(data))


@pytest.mark.parametrize("name, aux", [("nyuv2_mtan", "depth"), ("cityscapes", "disparity")])
def test_fit_and_evaluate_end_to_end(tmp_path, name, aux):
    root = write_dataset(tmp_path / name, name)
    cfg = config_from_dict({
        "out_dir": str(tmp_path / "run"),
        "data": {"name": name, "root": str(root), "val_fraction": 0.34, "batch_size": 2},
        "tasks": {"primary": "seg", "aux": [aux]},
        "method": {"name": "aux_head"},
        "train": {"epochs": 1, "max_steps_per_epoch": 2, "device": "cpu"},
    })
    result = fit(cfg, progress=False)
    assert set(result.test_best) == {"seg", aux}
    assert np.isfinite(result.test_best["seg"]["miou"]) and np.isfinite(result.test_best[aux]["abs_err"])
    assert main(["evaluate", str(result.out_dir), "--quiet", "--device", "cpu"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("nyuv2_mtan", (288, 384)), ("cityscapes", (128, 256))])
def test_decoding_throughput(tmp_path, name, size):
    """Images per second of one reader at full resolution, with and without augmentation (printed; -s shows it)."""
    root = write_dataset(tmp_path / name, name, num_train=20, num_val=1, size=size)
    dataset = NpyFolders(root, "train", folder_layout(name))
    for augmented in (False, True):
        view = dataset.subset(range(len(dataset)), augment=augmented)
        view[0]
        start = time.perf_counter()
        for _ in range(3):
            for i in range(len(view)):
                view[i]
        rate = 3 * len(view) / (time.perf_counter() - start)
        print(f"{name} {size[0]}x{size[1]} augment={augmented}: {rate:.0f} images/s")
        assert rate > 10
