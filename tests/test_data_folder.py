"""The ``folder`` reader (users' own data, with missing labels) and ``auxnas data check``, on tiny fixtures written
in the on-disk layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from auxnas.cli import main
from auxnas.config import ConfigError, DataConfig, load_config
from auxnas.config.validate import validate
from auxnas.data import FolderImages, PartiallyLabelled, build_splits
from auxnas.data.check import check_folder, format_report
from auxnas.data.folder import read_spec
from auxnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from auxnas.tasks import build_task
from auxnas.train import fit

H, W = 24, 32
YAML = {"tasks": {"seg": {"classes": 5}, "normal": {"encoding": "rgb8"}, "depth": None, "scene": {"classes": 3}}}
NPY_YAML = {"tasks": {"seg": {"classes": 5, "ignore": -1, "folder": "labels"}, "normal": {"encoding": "unit"},
                      "depth": {"folder": "range"}, "scene": {"classes": 3}}}


def arrays(i: int, size: tuple[int, int] = (H, W)) -> dict[str, np.ndarray]:
    """Image ``i``'s content: RGB in [0, 1], classes 0..4 (-1 = ignore), depth in metres, unit normals, a scene;
    the top-left 4 x 4 corner unlabelled / invalid."""
    rng = np.random.default_rng(i)
    h, w = size
    seg = rng.integers(0, 5, (h, w))
    seg[:4, :4] = -1
    depth = np.round(rng.uniform(0.5, 10.0, (h, w)), 3)
    depth[:4, :4] = 0
    normal = rng.normal(size=(h, w, 3))
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal[:4, :4] = 0
    return {"image": rng.integers(0, 256, (h, w, 3)).astype(np.uint8), "seg": seg, "depth": depth,
            "normal": normal.astype(np.float32), "scene": i % 3}


def write_folder(root: Path, splits: dict[str, int] | None = None, npy: bool = False, missing=None,
                 sizes: dict[int, tuple[int, int]] | None = None, spec: dict | None = None) -> Path:
    """A folder dataset: PNG images, PNG seg (255 = ignore), rgb8 normals, 16-bit depth, txt scenes; or with ``npy``
    every file as .npy (seg ignore -1). ``missing``: task -> image numbers without that label (every split)."""
    splits = splits or {"train": 8, "test": 4}
    spec = spec or (NPY_YAML if npy else YAML)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    folders = {t: (s or {}).get("folder", t) for t, s in spec["tasks"].items()}
    for split, count in splits.items():
        for folder in ["rgb", *folders.values()]:
            (root / split / folder).mkdir(parents=True)
        for i in range(count):
            a = arrays(i, (sizes or {}).get(i, (H, W)))
            d = {key: root / split / folder for key, folder in [("image", "rgb"), *folders.items()]}
            if npy:
                np.save(d["image"] / f"{i}.npy", a["image"].astype(np.float32) / 255)
            else:
                Image.fromarray(a["image"]).save(d["image"] / f"{i}.png")
            for task in folders:
                if i in (missing or {}).get(task, ()):
                    continue
                if npy:
                    value = {"seg": a["seg"].astype(np.int16), "depth": a["depth"].astype(np.float32),
                             "normal": a["normal"], "scene": np.array(a["scene"], np.int64)}[task]
                    np.save(d[task] / f"{i}.npy", value)
                elif task == "seg":
                    Image.fromarray(np.where(a["seg"] < 0, 255, a["seg"]).astype(np.uint8)).save(d[task] / f"{i}.png")
                elif task == "depth":
                    Image.fromarray(np.round(a["depth"] * 1000).astype(np.uint16)).save(d[task] / f"{i}.png")
                elif task == "normal":
                    encoded = np.round((a["normal"] + 1) * 127.5).clip(0, 255).astype(np.uint8)
                    encoded[:4, :4] = 0
                    Image.fromarray(encoded).save(d[task] / f"{i}.png")
                else:
                    (d[task] / f"{i}.txt").write_text(f"{a['scene']}\n")
    return root


@pytest.fixture
def root(tmp_path) -> Path:
    return write_folder(tmp_path / "data")


def cfg_of(root: Path, **kwargs) -> DataConfig:
    return DataConfig(name="folder", root=str(root), **kwargs)


def normalised(image: np.ndarray) -> torch.Tensor:
    raw = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    raw = raw / 255 if image.dtype == np.uint8 else raw
    return (raw - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def test_png_samples_decode_like_synthetic_scenes(root):
    dataset = FolderImages(root, "train")
    assert len(dataset) == 8 and dataset.size == (H, W) and dataset.num_classes == {"seg": 5, "scene": 3}
    sample, a = dataset[2], arrays(2)
    assert set(sample) == {"image", "seg", "normal", "depth", "scene", "labelled"}
    assert sample["image"].dtype == torch.float32 and torch.allclose(sample["image"], normalised(a["image"]), atol=1e-6)
    assert sample["seg"].dtype == torch.int64 and sample["seg"].shape == (H, W)
    assert torch.equal(sample["seg"], torch.from_numpy(np.where(a["seg"] < 0, 255, a["seg"])))
    assert sample["depth"].shape == (1, H, W) and sample["depth"].dtype == torch.float32
    assert torch.allclose(sample["depth"][0], torch.from_numpy(a["depth"]).float(), atol=1e-6)  # 16-bit / 1000
    normal = sample["normal"]
    assert normal.shape == (3, H, W) and (normal[:, :4, :4] == 0).all()  # (0, 0, 0) encodes invalid
    assert torch.allclose(normal[:, 4:].norm(dim=0), torch.ones(H - 4, W), atol=1e-5)
    assert (normal[:, 4:] - torch.from_numpy(a["normal"]).permute(2, 0, 1)[:, 4:]).abs().max() < 0.01
    assert sample["scene"].dtype == torch.int64 and sample["scene"].dim() == 0 and int(sample["scene"]) == 2
    assert all(bool(v) for v in sample["labelled"].values()) and set(sample["labelled"]) == set(YAML["tasks"])
    jpg = root / "train/rgb/5.jpg"
    Image.open(root / "train/rgb/5.png").save(jpg, quality=95)
    (root / "train/rgb/5.png").unlink()
    sample = FolderImages(root, "train")[5]
    assert torch.allclose(sample["image"], normalised(np.asarray(Image.open(jpg))), atol=1e-6)


def test_npy_samples_map_the_ignore_value_and_keep_metres(tmp_path):
    root = write_folder(tmp_path / "npy", npy=True)
    sample, a = FolderImages(root, "test")[1], arrays(1)
    assert torch.allclose(sample["image"], normalised(a["image"].astype(np.float32) / 255), atol=1e-6)
    assert torch.equal(sample["seg"], torch.from_numpy(np.where(a["seg"] < 0, 255, a["seg"])))  # ignore -1 -> 255
    assert torch.equal(sample["depth"][0], torch.from_numpy(a["depth"].astype(np.float32)))
    assert torch.allclose(sample["normal"], torch.from_numpy(a["normal"]).permute(2, 0, 1), atol=1e-6)
    assert int(sample["scene"]) == 1


def test_missing_labels_are_unlabelled_and_skipped_by_loss_and_metric(tmp_path):
    root = write_folder(tmp_path / "data", missing={"seg": [1, 3], "depth": [0]})
    dataset = FolderImages(root, "train")
    assert dataset.label_counts() == {"seg": 6, "normal": 8, "depth": 7, "scene": 8}
    unlabelled = dataset[1]
    assert not unlabelled["labelled"]["seg"] and unlabelled["labelled"]["depth"]
    assert (unlabelled["seg"] == 255).all() and unlabelled["seg"].dtype == torch.int64
    assert (dataset[0]["depth"] == 0).all() and dataset[0]["depth"].shape == (1, H, W)
    augmented = dataset.subset(range(len(dataset)), augment=True)[1]
    assert (augmented["seg"] == 255).all() and not augmented["labelled"]["seg"] and augmented["labelled"]["depth"]
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["labelled"]["seg"].tolist() == [True, False, True, False]
    seg = build_task("seg", {"seg": 5})
    pred = torch.randn(4, 5, H, W)
    keep = torch.tensor([0, 2])
    assert torch.allclose(seg.batch_loss(pred, batch), seg.loss(pred[keep], batch["seg"][keep]))
    metric = seg.new_metric()
    assert seg.update_metric(metric, pred, batch) == 2
    reference = seg.new_metric()
    reference.update(pred[keep], batch["seg"][keep])
    assert metric.compute() == reference.compute()
    depth = build_task("depth", {})
    assert depth.update_metric(depth.new_metric(), torch.rand(4, 1, H, W), batch) == 3


def test_label_counts_and_labelled_fraction_compose(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 10, "test": 2}, missing={"seg": [0, 1, 2, 3]})
    splits = build_splits(cfg_of(root, val_fraction=0.2, augment=False), progress=True)
    assert "8 train + 2 validation images (from its training images)" in capsys.readouterr().out
    assert isinstance(splits.train, PartiallyLabelled)
    counts = splits.train_label_counts(["seg", "normal"])
    own = splits.train.dataset.label_masks()["seg"]
    assert counts == {"seg": int(own.sum()), "normal": 8} and 4 <= counts["seg"] <= 6
    half = build_splits(cfg_of(root, val_fraction=0.2, labelled_fraction={"seg": 0.5, "normal": 0.25},
                                 random_targets=["depth"]), progress=False)
    kept = half.train.labelled["seg"]
    assert kept.sum() == round(0.5 * own.sum()) and not (kept & ~own).any()  # a share of the images with labels
    assert half.train_label_counts(["seg", "normal", "depth"]) == {"seg": int(kept.sum()), "normal": 2, "depth": 8}
    sample = half.train[int(np.flatnonzero(~own)[0])]
    assert not sample["labelled"]["seg"] and sample["depth"].shape == (1, H, W)


def test_val_folder_is_the_validation_split(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 6, "val": 3, "test": 2}, missing={"seg": [2]})
    splits = build_splits(cfg_of(root, val_fraction=0.5), progress=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 2)
    assert "its val folder; data.val_fraction unused" in capsys.readouterr().out
    assert splits.val.split_dir == root / "val" and not splits.val.augment and splits.train.dataset.augment
    assert [bool(splits.val[i]["labelled"]["seg"]) for i in range(3)] == [True, True, False]


def test_size_resizes_every_image_and_label(tmp_path):
    spec = {**YAML, "size": [12, 16]}
    root = write_folder(tmp_path / "data", sizes={1: (48, 64)}, spec=spec, missing={"seg": [0]})
    dataset = FolderImages(root, "train")
    assert dataset.size == (12, 16)
    for i in (0, 1):
        sample = dataset[i]
        assert sample["image"].shape == (3, 12, 16) and sample["seg"].shape == (12, 16)
        assert sample["depth"].shape == (1, 12, 16) and sample["normal"].shape == (3, 12, 16)
        valid = sample["normal"].norm(dim=0) > 0
        assert torch.allclose(sample["normal"].norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-5)
    assert (dataset[0]["seg"] == 255).all()
    seg = dataset[1]["seg"]
    assert set(seg.unique().tolist()) <= {0, 1, 2, 3, 4, 255} and (seg[:1, :1] == 255).all()  # nearest: no blending
    depth = dataset[1]["depth"]
    assert set(depth.unique().tolist()) <= set(torch.from_numpy(arrays(1, (48, 64))["depth"]).float().unique().tolist())

    mixed = write_folder(tmp_path / "mixed", sizes={3: (48, 64)})
    with pytest.raises(ValueError, match=r"train/rgb/3\.png: 48x64, but the first training image is 24x32; set size"):
        FolderImages(mixed, "train")[3]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


ERRORS = [
    ("truncated image", lambda r: _truncate(r / "train/rgb/2.png"), r"train/rgb/2\.png: unreadable image", 2),
    ("npy image shape", lambda r: (r / "train/rgb/2.png").unlink() or np.save(r / "train/rgb/2.npy", np.zeros((H, W))),
     r"train/rgb/2\.npy: expected shape \(H, W, 3\), got \(24, 32\)", 2),
    ("seg out of range", lambda r: Image.fromarray(np.full((H, W), 7, np.uint8)).save(r / "train/seg/1.png"),
     r"train/seg/1\.png: labels must be classes 0\.\.4 or the ignore value 255, got 7", 1),
    ("seg of another size", lambda r: Image.fromarray(np.zeros((12, 16), np.uint8)).save(r / "train/seg/1.png"),
     r"train/seg/1\.png: 12x16, but its image .*train/rgb/1\.png is 24x32", 1),
    ("class not an integer", lambda r: (r / "train/scene/3.txt").write_text("kitchen\n"),
     r"train/scene/3\.txt: expected one integer class, got b'kitchen", 3),
    ("class out of range", lambda r: (r / "train/scene/3.txt").write_text("3"),
     r"train/scene/3\.txt: class 3 out of range 0\.\.2", 3),
    ("8-bit depth", lambda r: Image.fromarray(np.ones((H, W), np.uint8)).save(r / "train/depth/0.png"),
     r"train/depth/0\.png: expected a 16-bit single-channel PNG", 0),
    ("unknown extension", lambda r: (r / "train/seg/5.bmp").write_bytes(b"x"),
     r"train/seg/5\.bmp: unknown extension '\.bmp' \(seg labels: \.png, \.npy\)", None),
    ("two files for one id", lambda r: np.save(r / "train/depth/4.npy", np.ones((H, W), np.float32)),
     r"train/depth/4\.npy and .*train/depth/4\.png: two files for image '4'|train/depth/4\.png and", None),
    ("label without image", lambda r: (r / "train/scene/99.txt").write_text("1"),
     r"train/scene/99\.txt: label without an image", None),
    ("missing task folder", lambda r: shutil.rmtree(r / "train/depth"),
     r"train/depth: missing folder of the depth labels", None),
]


@pytest.mark.parametrize("mutate, message, index", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_every_bad_file_is_named(root, mutate, message, index):
    mutate(root)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        dataset = FolderImages(root, "train")
        dataset[index]


def test_npy_errors_name_the_file(tmp_path):
    root = write_folder(tmp_path / "npy", npy=True, splits={"train": 3, "test": 1})
    np.save(root / "train/normal/0.npy", np.full((H, W, 3), 0.5, np.float32))
    np.save(root / "train/labels/1.npy", np.full((H, W), 0.5, np.float32))
    np.save(root / "train/scene/2.npy", np.array([1.5]))
    np.save(root / "train/range/2.npy", -np.ones((H, W), np.float32))
    dataset = FolderImages(root, "train")
    with pytest.raises(ValueError, match=r"train/normal/0\.npy: 768 vectors are neither unit vectors nor zero"):
        dataset[0]
    with pytest.raises(ValueError, match=r"train/labels/1\.npy: labels must be integer classes 0\.\.4 or the ignore "
                                         r"value -1, got non-integer values, e\.g\. 0\.5 at pixel \(0, 0\)"):
        dataset[1]
    with pytest.raises(ValueError, match=r"train/range/2\.npy: depth must be finite and >= 0 \(0 = invalid\), got "
                                         r"values in \[-1, -1\]; mark invalid pixels with 0"):
        dataset[2]
    (root / "train/range/2.npy").unlink()
    with pytest.raises(ValueError, match=r"train/scene/2\.npy: expected one integer class \(an int scalar\)"):
        FolderImages(root, "train")[2]  # depth 2 now unlabelled


def test_npy_values_of_a_near_miss_convention_say_what_to_do(tmp_path, capsys):
    root = write_folder(tmp_path / "npy", npy=True, splits={"train": 4, "test": 1})
    normals = np.load(root / "train/normal/0.npy")
    np.save(root / "train/normal/0.npy", np.where(normals == 0, 0, (normals + 1) / 2).astype(np.float32))
    labels = np.load(root / "train/labels/1.npy").astype(np.float32)
    labels[7, 8] = np.nan
    np.save(root / "train/labels/1.npy", labels)
    np.save(root / "train/rgb/2.npy", np.moveaxis(np.load(root / "train/rgb/2.npy"), -1, 0))
    np.save(root / "train/rgb/3.npy", arrays(3)["image"])  # uint8: read as 8-bit
    dataset = FolderImages(root, "train")
    with pytest.raises(ValueError, match=r"train/normal/0\.npy: \d+ vectors are neither unit vectors nor zero "
                                         r"\(invalid\): norms .*; no component is negative: stored as \(n \+ 1\) / 2\? "
                                         r"store the unit vectors, 2 \* v - 1$"):
        dataset[0]
    with pytest.raises(ValueError, match=r"train/labels/1\.npy: labels must be integer classes 0\.\.4 or the ignore "
                                         r"value -1, got 1 NaN or infinite values$"):  # no advice to mark it 0
        dataset[1]
    with pytest.raises(ValueError, match=r"train/rgb/2\.npy: expected shape \(H, W, 3\), got \(3, 24, 32\): its "
                                         r"channels come first; store it channels last, \(H, W, C\) = \(24, 32, 3\)$"):
        dataset[2]
    sample = dataset[3]
    assert capsys.readouterr().err == f"{root / 'train/rgb'}: 8-bit (uint8) .npy images, read as value / 255\n"
    assert torch.allclose(sample["image"], normalised(arrays(3)["image"]), atol=1e-6)
    report = check_folder(root, progress=False)
    assert capsys.readouterr().err == ""  # said once per folder
    assert len(report["problems"]) == 3 and all("train/" in p for p in report["problems"])


@pytest.mark.parametrize("content, message", [
    ({"tasks": {"seg": {"classes": 5}}, "colour": 1}, r"dataset\.yaml: colour: unknown key; valid keys: tasks, size"),
    ({"tasks": {"sky": {}}}, r"dataset\.yaml: tasks\.sky: unknown task; valid tasks: seg, normal"),
    ({"tasks": {"layout": {}}}, r"tasks\.layout: a task of the synthetic scenes only; valid tasks: seg, normal, depth, "
                                r"disparity, object, scene$"),
    ({"tasks": {"seg": {}}}, r"dataset\.yaml: tasks\.seg\.classes: required for seg"),
    ({"tasks": {"scene": None}}, r"dataset\.yaml: tasks\.scene\.classes: required for scene"),
    ({"tasks": {"seg": {"classes": 3, "scale": 2}}}, r"tasks\.seg\.scale: unknown key; valid keys of seg: folder, cl"),
    ({"tasks": {"normal": {}}}, r"dataset\.yaml: tasks\.normal\.encoding: required: unit .* or rgb8"),
    ({"tasks": {"seg": {"classes": 3, "ignore": 1}}}, r"tasks\.seg\.ignore: expected an integer label value outside"),
    ({"tasks": {"seg": {"classes": 300}}}, r"tasks\.seg\.classes: at most 255"),
    ({"tasks": {"depth": {"scale": 0}}}, r"tasks\.depth\.scale: expected a positive number"),
    ({"tasks": {"depth": {"folder": "rgb"}}}, r"tasks\.depth\.folder: 'rgb' is already the folder of the images"),
    ({"tasks": {"depth": None}, "size": [10]}, r"dataset\.yaml: size: expected \[height, width\]"),
    ({"size": [10, 10]}, r"dataset\.yaml: tasks: required"),
    ("tasks: [", r"dataset\.yaml: not valid YAML"),
])
def test_dataset_yaml_is_validated_strictly(tmp_path, content, message):
    (tmp_path / "dataset.yaml").write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    with pytest.raises(ValueError, match=message):
        read_spec(tmp_path)


def test_config_refuses_tasks_the_folder_does_not_have(root, tmp_path):
    base = ["data.name=folder", f"data.root={root}", f"out_dir={tmp_path / 'run'}"]
    with pytest.raises(ConfigError, match=r"tasks.primary: dataset folder has no 'object' targets \(.*dataset\.yaml "
                                          r"names no object task\); it provides seg, normal, depth, scene"):
        validate(load_config("demo", [*base, "tasks.primary=object"]))
    (root / "dataset.yaml").unlink()
    with pytest.raises(ConfigError, match=r"dataset\.yaml: missing file"):
        validate(load_config("demo", [*base, "tasks.primary=seg", "tasks.aux=[normal]"]))


def test_check_folder_reports_counts_ranges_and_every_problem(tmp_path):
    root = write_folder(tmp_path / "data", splits={"train": 6, "test": 3}, missing={"seg": [1], "scene": [0, 4]})
    report = check_folder(root, progress=False)
    assert report["problems"] == [] and report["size"] == [H, W] and report["size_from"] == "first training image"
    assert set(report["splits"]) == {"train", "test"} and report["tasks"]["normal"] == {"folder": "normal",
                                                                                       "encoding": "rgb8"}
    train = report["splits"]["train"]
    assert train["images"] == 6 and train["tasks"]["seg"]["labels"] == 5 and train["tasks"]["seg"]["unlabelled"] == 1
    seg = train["tasks"]["seg"]
    assert seg["ignored_pixels"] == 5 * 16 and sum(seg["pixels_per_class"]) == 5 * (H * W - 16)
    labels = np.concatenate([arrays(i)["seg"].ravel() for i in (0, 2, 3, 4, 5)])
    assert seg["pixels_per_class"] == np.bincount(labels[labels >= 0], minlength=5).tolist()
    assert train["tasks"]["scene"]["images_per_class"] == [1, 1, 2]  # images 1, 2, 3, 5 -> 1, 2, 0, 2
    depth = train["tasks"]["depth"]
    assert depth["valid_fraction"] == pytest.approx(1 - 16 / (H * W))
    assert depth["min"] == pytest.approx(min(arrays(i)["depth"][arrays(i)["depth"] > 0].min() for i in range(6)))
    assert train["tasks"]["normal"]["valid_fraction"] == pytest.approx(1 - 16 / (H * W))
    text = format_report(report)
    assert "train: 6 images" in text and "no folder (the validation images are carved from train)" in text
    assert "0 problems found" in text

    _truncate(root / "train/rgb/2.png")
    Image.fromarray(np.full((H, W), 9, np.uint8)).save(root / "test/seg/0.png")
    (root / "test/scene/1.txt").write_text("one")
    (root / "train/seg/x.tif").write_bytes(b"")
    (root / "test/depth/7.png").write_bytes(b"")
    for path in (root / "test/normal").iterdir():
        path.unlink()
    report = check_folder(root, progress=False)
    named = ["train/rgb/2.png: unreadable", "test/seg/0.png: labels must be", "test/scene/1.txt: expected one integer",
             "train/seg/x.tif: unknown extension", "test/depth/7.png: label without an image",
             "test/normal: no normal labels"]
    for name in named:
        assert sum(name in problem for problem in report["problems"]) == 1, (name, report["problems"])
    assert report["splits"]["test"]["tasks"]["normal"]["labels"] == 0


def test_cli_data_check_exit_codes(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 3, "val": 1, "test": 2})
    assert main(["data", "check", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "val: 1 images" in out and "0 problems found" in out
    Image.fromarray(np.full((H, W), 6, np.uint8)).save(root / "val/seg/0.png")
    assert main(["data", "check", str(root), "--quiet"]) == 1
    assert "1 problem:" in capsys.readouterr().out
    (root / "dataset.yaml").unlink()
    assert main(["data", "check", str(root), "--quiet"]) == 2
    assert "dataset.yaml: missing file" in capsys.readouterr().err


def test_fit_on_a_folder_with_missing_primary_labels(tmp_path):
    root = write_folder(tmp_path / "data", splits={"train": 10, "test": 4}, missing={"seg": [0, 3, 6]})
    cfg = load_config("demo", [
        "data.name=folder", f"data.root={root}", "data.val_fraction=0.2", "data.batch_size=4", "tasks.primary=seg",
        "tasks.aux=[normal]", "method.name=aux_head", "model.backbone=tiny_resnet", "train.epochs=1",
        "train.device=cpu", f"out_dir={tmp_path / 'run'}",
    ])
    result = fit(cfg, progress=False)
    splits = build_splits(cfg.data, progress=False)
    assert result.train_labels == {"seg": splits.train_label_counts(["seg"])["seg"], "normal": 8}
    assert result.train_labels["seg"] < 8
    assert np.isfinite(result.test_best["seg"]["miou"]) and np.isfinite(result.test_best["normal"]["mean_angle"])
