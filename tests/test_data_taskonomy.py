"""The taskonomy reader on tiny fixtures in the public per-building, per-domain layout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from auxnas.config import ConfigError, DataConfig, load_config
from auxnas.config.validate import validate
from auxnas.data import build_splits
from auxnas.data.taskonomy import open_splits, read_split_file, tasks
from auxnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SCALES
from auxnas.train import fit

S = 16
#: building -> its split; "unused" is listed with no split and has no folder
BUILDINGS = {"allensville": "train", "beechwood": "train", "coffeen": "val", "cosmos": "test"}
VIEWS = [(0, 0), (0, 1), (3, 2)]
SPLIT_FILE = "train_val_test_tiny.csv"
#: raw depth_zbuffer values of row 0, columns 0..3, and what they decode to (metres; 0 = invalid)
DEPTH_ROW = {0: (65535, 0.0), 1: (64500, 0.0), 2: (64499, 64499 / 512), 3: (0, 0.0)}


def _name(point: int, view: int, domain: str, ext: str) -> str:
    return f"point_{point}_view_{view}_domain_{domain}.{ext}"


def write_taskonomy(root: Path, domain_first: bool = False, size: int = S) -> Path:
    """Random files of every domain: 0 seg labels on row 1, the depth markers of ``DEPTH_ROW`` on row 0, a known
    normal at pixel (2, 3); object scores as probabilities (view 0), unnormalised (view 1, stored (1, 1000)) and logits
    (view 2)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows = ["id,train,val,test", *(f"{b},{int(s == 'train')},{int(s == 'val')},{int(s == 'test')}"
                                   for b, s in BUILDINGS.items()), "unused,0,0,0"]
    (root / SPLIT_FILE).write_text("\n".join(rows) + "\n")
    for building in BUILDINGS:
        def folder(domain: str, building: str = building) -> Path:
            path = root / domain / building if domain_first else root / building / domain
            path.mkdir(parents=True, exist_ok=True)
            return path

        seg_suffix = "segmentsemantic" if building == "beechwood" else "segment_semantic"  # both spellings occur
        for index, (point, view) in enumerate(VIEWS):
            rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(folder("rgb") / _name(point, view, "rgb", "png"))
            seg = rng.integers(0, 18, (size, size)).astype(np.uint8)
            seg[1, :4] = 0
            Image.fromarray(seg).save(folder("segment_semantic") / _name(point, view, seg_suffix, "png"))
            normal = rng.normal(size=(size, size, 3))
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            encoded = np.clip(np.round((normal + 1) * 127.5), 0, 255).astype(np.uint8)
            encoded[2, 3] = (255, 0, 255)
            Image.fromarray(encoded).save(folder("normal") / _name(point, view, "normal", "png"))
            depth = rng.integers(512, 30000, (size, size)).astype(np.uint16)
            for col, (raw, _) in DEPTH_ROW.items():
                depth[0, col] = raw
            Image.fromarray(depth).save(folder("depth_zbuffer") / _name(point, view, "depth_zbuffer", "png"))
            scores = rng.dirichlet(np.ones(1000)).astype(np.float32)
            scores = [scores, 2 * scores[None], rng.normal(0, 2, 1000).astype(np.float32)][index]
            np.save(folder("class_object") / _name(point, view, "class_object", "npy"), scores)
            np.save(folder("class_scene") / _name(point, view, "class_scene", "npy"),
                    rng.dirichlet(np.ones(365)).astype(np.float32))
    return root


@pytest.fixture
def taskonomy(tmp_path) -> Path:
    return write_taskonomy(tmp_path / "taskonomy")


def _cfg(root: Path, **kwargs) -> DataConfig:
    return DataConfig(name="taskonomy", root=str(root), **{"image_size": S, **kwargs})


def _png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def test_sample_decoding_is_exact(taskonomy):
    train, _, _ = open_splits(_cfg(taskonomy))
    assert train.size == (S, S) and train.num_classes == {"seg": 17, "object": 1000, "scene": 365}
    sample = train[0]
    assert set(sample) == {"image", "seg", "normal", "depth", "object", "scene"}
    files = taskonomy / "allensville"

    raw = torch.from_numpy(_png(files / "rgb" / _name(0, 0, "rgb", "png"))).permute(2, 0, 1) / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(sample["image"], (raw - mean) / std)

    labels = _png(files / "segment_semantic" / _name(0, 0, "segment_semantic", "png")).astype(np.int64)
    assert sample["seg"].dtype == torch.int64 and sample["seg"].shape == (S, S)
    assert torch.equal(sample["seg"], torch.from_numpy(np.where(labels == 0, 255, labels - 1)))
    assert (sample["seg"][1, :4] == 255).all() and int(sample["seg"][sample["seg"] != 255].max()) <= 16

    depth = _png(files / "depth_zbuffer" / _name(0, 0, "depth_zbuffer", "png"))
    assert depth.dtype == np.uint16 and sample["depth"].shape == (1, S, S)
    for col, (_, metres) in DEPTH_ROW.items():
        assert sample["depth"][0, 0, col].item() == pytest.approx(metres, rel=1e-7)
    assert torch.allclose(sample["depth"][0, 1:], torch.from_numpy(depth[1:] / 512).float())

    normal = sample["normal"]
    assert torch.allclose(normal[:, 2, 3], torch.tensor([1.0, -1.0, 1.0]) / math.sqrt(3), atol=1e-6)
    assert (normal[:, 0, [0, 1, 3]] == 0).all() and (normal[:, 0, 2] != 0).any()  # invalid where depth is
    valid = normal.abs().sum(0) > 0
    assert int((~valid).sum()) == 3 and torch.allclose(normal.norm(dim=0)[valid], torch.ones(S * S - 3), atol=1e-6)


def test_soft_labels_are_distributions(taskonomy):
    train, _, _ = open_splits(_cfg(taskonomy))
    folder = taskonomy / "allensville" / "class_object"
    stored = [np.load(folder / _name(p, v, "class_object", "npy")).reshape(-1).astype(np.float64) for p, v in VIEWS]
    expected = [stored[0] / stored[0].sum(), stored[1] / stored[1].sum(),
                np.exp(stored[2] - stored[2].max()) / np.exp(stored[2] - stored[2].max()).sum()]
    for i, want in enumerate(expected):
        sample = train[i]
        for key, count in (("object", 1000), ("scene", 365)):
            assert sample[key].dtype == torch.float32 and sample[key].shape == (count,)
            assert sample[key].sum().item() == pytest.approx(1.0, abs=1e-5) and (sample[key] >= 0).all()
        assert np.allclose(sample["object"].numpy(), want, rtol=1e-5, atol=1e-9)


def test_splits_are_formed_by_buildings(taskonomy, tmp_path, capsys):
    assert read_split_file(taskonomy / SPLIT_FILE) == {"train": ["allensville", "beechwood"], "val": ["coffeen"],
                                                       "test": ["cosmos"]}
    train, val, test = open_splits(_cfg(taskonomy))
    assert (len(train), len(val), len(test)) == (6, 3, 3)
    assert train.buildings == ["allensville", "beechwood"] and test.buildings == ["cosmos"]
    assert train.views[:, 1:].tolist() == [list(v) for v in VIEWS] * 2
    assert tasks(_cfg(taskonomy)) == ("seg", "normal", "depth", "object", "scene")

    splits = build_splits(_cfg(taskonomy), progress=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 3)
    assert splits.train.augment and not splits.val.augment and splits.val.buildings == ["coffeen"]
    assert "taskonomy at" in capsys.readouterr().out

    no_val = (taskonomy / SPLIT_FILE).read_text().replace("coffeen,0,1,0", "coffeen,1,0,0")
    (tmp_path / "mine.csv").write_text(no_val)
    train, val, _ = open_splits(_cfg(taskonomy, taskonomy_split=str(tmp_path / "mine.csv")))
    assert (len(train), val) == (9, None)

    other = write_taskonomy(tmp_path / "domain_first", domain_first=True)
    assert (other / "rgb" / "cosmos").is_dir()
    for a, b in zip(open_splits(_cfg(other))[2], open_splits(_cfg(taskonomy))[2], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_resize_to_image_size(taskonomy):
    size = 8
    sample = open_splits(_cfg(taskonomy, image_size=size))[0][0]
    assert {k: tuple(v.shape) for k, v in sample.items()} == {
        "image": (3, size, size), "seg": (size, size), "normal": (3, size, size), "depth": (1, size, size),
        "object": (1000,), "scene": (365,)}
    files = taskonomy / "allensville"
    rgb = Image.open(files / "rgb" / _name(0, 0, "rgb", "png")).resize((size, size), Image.BILINEAR)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    raw = torch.from_numpy(np.array(rgb)).permute(2, 0, 1) / 255
    assert torch.allclose(sample["image"], (raw - mean) / std)
    # nearest neighbour from 16 to 8 takes rows and columns 1, 3, 5, ...: values unchanged, no blend
    labels = _png(files / "segment_semantic" / _name(0, 0, "segment_semantic", "png")).astype(np.int64)[1::2, 1::2]
    assert torch.equal(sample["seg"], torch.from_numpy(np.where(labels == 0, 255, labels - 1)))
    depth = _png(files / "depth_zbuffer" / _name(0, 0, "depth_zbuffer", "png"))[1::2, 1::2]
    assert torch.allclose(sample["depth"][0], torch.from_numpy(np.where(depth >= 64500, 0, depth) / 512).float())
    valid = sample["normal"].abs().sum(0) > 0
    assert torch.allclose(sample["normal"].norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-6)


def test_a_domain_missing_in_one_building_is_not_provided(taskonomy):
    for file in (taskonomy / "cosmos" / "class_scene").iterdir():
        file.unlink()
    (taskonomy / "cosmos" / "class_scene").rmdir()
    assert tasks(_cfg(taskonomy)) == ("seg", "normal", "depth", "object")
    assert "scene" not in open_splits(_cfg(taskonomy))[0][0]
    with pytest.raises(ConfigError, match=r"tasks.aux\[0\]: dataset taskonomy has no 'scene' targets \(no folder "
                                          r".*cosmos/class_scene\); it provides seg, normal, depth, object"):
        validate(load_config("demo", ["data.name=taskonomy", f"data.root={taskonomy}", "tasks.primary=object",
                                      "tasks.aux=[scene]"]))


def test_augmentation_flips_normal_x_and_divides_depth_by_the_zoom(taskonomy):
    plain = open_splits(_cfg(taskonomy))[0]
    augmented = plain.subset(range(len(plain)), augment=True)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        draws = torch.rand(4).tolist()
        scale, flipped = SCALES[min(int(draws[0] * len(SCALES)), len(SCALES) - 1)], draws[3] < 0.5
        torch.manual_seed(seed)
        aug, ref = augmented[1], plain[1]
        assert torch.equal(aug["object"], ref["object"]) and torch.equal(aug["scene"], ref["scene"])
        if scale == 1.0 and flipped:
            assert torch.equal(aug["normal"][0], -ref["normal"][0].flip(-1))
            assert torch.equal(aug["normal"][1:], ref["normal"][1:].flip(-1))
            assert torch.equal(aug["seg"], ref["seg"].flip(-1)) and torch.equal(aug["depth"], ref["depth"].flip(-1))
        elif scale != 1.0 and not flipped:
            zoomed = (aug["depth"][aug["depth"] > 0] * scale).numpy()
            originals = ref["depth"][ref["depth"] > 0].numpy()
            assert np.isclose(zoomed[:, None], originals[None], rtol=1e-6).any(axis=1).all()
        else:
            continue
        seen.add((scale == 1.0, flipped))
    assert seen == {(True, True), (False, False)}


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def test_errors_name_the_file_or_folder(tmp_path, taskonomy):
    with pytest.raises(FileNotFoundError, match=r"data.root: .*nowhere is not a folder \(expected the taskonomy "
                                                r"layout ROOT/BUILDING/DOMAIN/"):
        open_splits(_cfg(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"absent\.csv: missing split file"):
        open_splits(_cfg(taskonomy, taskonomy_split="absent.csv"))
    (tmp_path / "bad.csv").write_text("id,train,test\nallensville,1,0\n")
    with pytest.raises(ValueError, match=r"bad\.csv: expected a CSV with the columns id,train,val,test, got "
                                         r"id,train,test"):
        open_splits(_cfg(taskonomy, taskonomy_split=str(tmp_path / "bad.csv")))
    (tmp_path / "bad.csv").write_text("id,train,val,test\nallensville,1,0,0\ncosmos,1,0,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: expected 0/1 in train,val,test with at most one 1"):
        open_splits(_cfg(taskonomy, taskonomy_split=str(tmp_path / "bad.csv")))
    (tmp_path / "bad.csv").write_text("id,train,val,test\nallensville,1,0,0\nmerom,0,0,1\n")
    with pytest.raises(FileNotFoundError, match=r"merom/rgb: missing folder of building merom \(the taskonomy "
                                                r"layout is"):
        open_splits(_cfg(taskonomy, taskonomy_split=str(tmp_path / "bad.csv")))
    with pytest.raises(ConfigError, match=r"merom/rgb: missing folder of building merom"):
        validate(load_config("demo", ["data.name=taskonomy", f"data.root={taskonomy}",
                                      f"data.taskonomy_split={tmp_path / 'bad.csv'}"]))
    # a config whose data is elsewhere (a checkpoint's) still loads; opening the splits reports the folder
    assert tasks(_cfg(tmp_path / "nowhere")) == ("seg", "normal", "depth", "object", "scene")
    with pytest.raises(ConfigError, match=r"data.taskonomy_split: expected the path of a \.csv building split"):
        validate(load_config("demo", ["data.name=taskonomy", f"data.root={taskonomy}", "data.taskonomy_split=tiny"]))

    files = taskonomy / "beechwood"
    (files / "normal" / _name(3, 2, "normal", "png")).unlink()
    with pytest.raises(FileNotFoundError, match=r"beechwood/normal/point_3_view_2_domain_normal\.png: missing file "
                                                r"\(1 of the 3 views of building beechwood have no normal file\)"):
        open_splits(_cfg(taskonomy))
    Image.fromarray(np.zeros((S, S), np.uint8)).save(files / "normal" / _name(3, 2, "normal", "png"))
    train = open_splits(_cfg(taskonomy))[0]
    with pytest.raises(ValueError, match=r"point_3_view_2_domain_normal\.png: expected an 8-bit RGB normal image"):
        train[5]
    Image.fromarray(np.zeros((S, S + 2, 3), np.uint8)).save(files / "normal" / _name(3, 2, "normal", "png"))
    with pytest.raises(ValueError, match=r"point_3_view_2_domain_normal\.png: expected the size \(16, 16\) of its "
                                         r"rgb image, got shape \(16, 18, 3\)"):
        train[5]
    _corrupt(files / "rgb" / _name(0, 1, "rgb", "png"))
    with pytest.raises(ValueError, match=r"beechwood/rgb/point_0_view_1_domain_rgb\.png: unreadable image file"):
        train[4]
    Image.fromarray(np.zeros((S, S), np.uint8)).save(files / "depth_zbuffer" / _name(0, 0, "depth_zbuffer", "png"))
    with pytest.raises(ValueError, match=r"point_0_view_0_domain_depth_zbuffer\.png: expected a 16-bit one-channel"):
        train[3]

    files = taskonomy / "allensville"
    Image.fromarray(np.full((S, S), 18, np.uint8)).save(
        files / "segment_semantic" / _name(0, 0, "segment_semantic", "png"))
    with pytest.raises(ValueError, match=r"point_0_view_0_domain_segment_semantic\.png: labels must be 0 "
                                         r"\(unlabelled\) or 1\.\.17, got values in \[18, 18\]"):
        train[0]
    np.save(files / "class_object" / _name(0, 1, "class_object", "npy"), np.ones(999, np.float32))
    with pytest.raises(ValueError, match=r"point_0_view_1_domain_class_object\.npy: expected 1000 class "
                                         r"probabilities, got shape \(999,\)"):
        train[1]
    np.save(files / "class_scene" / _name(0, 1, "class_scene", "npy"), np.zeros(365, np.float32))
    np.save(files / "class_object" / _name(0, 1, "class_object", "npy"), np.ones(1000, np.float32))
    with pytest.raises(ValueError, match=r"point_0_view_1_domain_class_scene\.npy: class probabilities sum to 0"):
        train[1]
    _corrupt(files / "class_scene" / _name(3, 2, "class_scene", "npy"))
    with pytest.raises(ValueError, match=r"point_3_view_2_domain_class_scene\.npy: unreadable \.npy file"):
        train[2]


def test_a_split_file_with_spaces_is_read_and_a_missing_column_named(taskonomy, tmp_path):
    spaced = (taskonomy / SPLIT_FILE).read_text().replace(",", ", ")
    (tmp_path / "spaced.csv").write_text(spaced)
    assert read_split_file(tmp_path / "spaced.csv") == read_split_file(taskonomy / SPLIT_FILE)
    (tmp_path / "bad.csv").write_text("id, train, validation, test\nallensville, 1, 0, 0\n")
    with pytest.raises(ValueError, match=r"bad\.csv: expected a CSV with the columns id,train,val,test, got "
                                         r"id,train,validation,test \(no column val\)$"):
        read_split_file(tmp_path / "bad.csv")


def test_an_8_bit_depth_png_is_reported_at_its_own_shape(taskonomy):
    depth = taskonomy / "allensville" / "depth_zbuffer" / _name(0, 0, "depth_zbuffer", "png")
    Image.fromarray(np.zeros((S, S), np.uint8)).save(depth)
    train = open_splits(_cfg(taskonomy, image_size=8))[0]
    with pytest.raises(ValueError, match=r"point_0_view_0_domain_depth_zbuffer\.png: expected a 16-bit one-channel "
                                         r"depth PNG \(units of 1/512 m\), got shape \(16, 16\) dtype uint8; an "
                                         r"8-bit copy of it has lost the depth: use the original file$"):
        train[0]


def test_a_domain_folder_of_a_near_miss_name_is_named(taskonomy):
    (taskonomy / "allensville" / "segment_semantic").rename(taskonomy / "allensville" / "segmentsemantic")
    assert "seg" not in tasks(_cfg(taskonomy))
    with pytest.raises(ConfigError, match=r"tasks.primary: dataset taskonomy has no 'seg' targets \(no folder "
                                          r".*allensville/segment_semantic; .*allensville/segmentsemantic is there: "
                                          r"rename it segment_semantic\); it provides normal, depth, object, scene$"):
        validate(load_config("demo", ["data.name=taskonomy", f"data.root={taskonomy}", "tasks.primary=seg",
                                      "tasks.aux=[]", "method.name=single"]))


def test_fit_one_epoch_end_to_end_on_dense_tasks(tmp_path, taskonomy):
    cfg = load_config("demo", [
        "data.name=taskonomy", f"data.root={taskonomy}", f"data.image_size={S}", "data.batch_size=4",
        "tasks.primary=normal", "tasks.aux=[depth]", "method.name=aux_head", "model.backbone=tiny_resnet",
        "train.epochs=1", "train.device=cpu", f"out_dir={tmp_path / 'run'}",
    ])
    result = fit(cfg, progress=False)
    assert set(result.test_best) == {"normal", "depth"}
    assert math.isfinite(result.test_best["normal"]["mean_angle"])
    assert math.isfinite(result.test_best["depth"]["abs_err"])


def test_fit_one_epoch_end_to_end_on_soft_labels(tmp_path, taskonomy):
    cfg = load_config("demo", [
        "data.name=taskonomy", f"data.root={taskonomy}", f"data.image_size={S}", "data.batch_size=4",
        "tasks.primary=object", "tasks.aux=[scene]", "tasks.losses={object: l2_soft, scene: l2_soft}",
        "method.name=aux_head", "model.backbone=tiny_resnet", "train.epochs=1", "train.device=cpu",
        f"out_dir={tmp_path / 'run'}",
    ])
    result = fit(cfg, progress=False)
    assert set(result.test_best) == {"object", "scene"}
    assert 0 <= result.test_best["object"]["top1"] <= 100 and 0 <= result.test_best["scene"]["top5"] <= 100
