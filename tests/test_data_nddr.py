"""The nyuv2_nddr reader (NYUv2, NDDR preprocessing: 40 classes, encoded-normal PNGs) on tiny fixtures in its
on-disk layouts (folders and list files)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from auxnas.config import ConfigError, DataConfig, load_config
from auxnas.config.validate import validate
from auxnas.data import build_splits
from auxnas.data.nddr import NddrImages, open_splits, tasks
from auxnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SCALES
from auxnas.tasks import build_task
from auxnas.train import fit

H, W = 24, 32
#: encoded normal pixels with known decodings: pixel -> (encoded RGB, expected unit vector, None = invalid (zero) or
#: "grey" = kept as its short decoding v / 127.5 - 1, which tasks.nddr_grey_normals decides about)
KNOWN = {
    (5, 6): ((255, 0, 255), (1 / math.sqrt(3), -1 / math.sqrt(3), 1 / math.sqrt(3))),
    (5, 7): ((255, 255, 0), (1 / math.sqrt(3), 1 / math.sqrt(3), -1 / math.sqrt(3))),
    (5, 8): ((255, 255, 255), None),   # the NDDR invalid marker
    (5, 9): ((127, 128, 127), "grey"),   # decodes to almost the zero vector: not a normal
    (6, 9): ((127, 127, 127), "grey"),   # the grey of every real NDDR normal file
    # one channel off 255 is valid (as in the authors' code)
    (5, 10): ((254, 255, 255), tuple(np.array([254 / 127.5 - 1, 1, 1]) / np.linalg.norm([254 / 127.5 - 1, 1, 1]))),
}


def _encode(normals: np.ndarray) -> np.ndarray:
    return np.clip(np.round((normals + 1) * 127.5), 0, 254).astype(np.uint8)


def write_nddr(root: Path, num_train: int = 6, num_test: int = 3, depth: bool = True, lists: bool = False,
               size: tuple[int, int] = (H, W)) -> Path:
    """Random files in the NDDR layout: 255 labels, (255, 255, 255) normals and 0 depth in the top-left corner."""
    rng = np.random.default_rng(0)
    h, w = size
    folders = ["img", "seg", "normal_mask"] + (["depth"] if depth else [])
    for split, count in (("training", num_train), ("testing", num_test)):
        for folder in folders:
            (root / split / folder).mkdir(parents=True)
        for i in range(count):
            name = f"{i + 1:04d}"
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / split / "img" / f"{name}.png")
            seg = rng.integers(0, 40, (h, w)).astype(np.uint8)
            seg[:4, :4] = 255
            Image.fromarray(seg).save(root / split / "seg" / f"{name}.png")
            normal = rng.normal(size=(h, w, 3))
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            encoded = _encode(normal)
            encoded[:4, :4] = 255
            for (r, c), (rgb, _) in KNOWN.items():
                encoded[r, c] = rgb
            Image.fromarray(encoded).save(root / split / "normal_mask" / f"{name}.png")
            if depth:
                values = rng.uniform(0.5, 10.0, (h, w)).astype(np.float32)
                values[:4, :4] = 0
                np.save(root / split / "depth" / f"{name}.npy", values)
        if lists:
            (root / "list").mkdir(exist_ok=True)
            names = [f"{i + 1:04d}" for i in range(count)]
            for key, folder, ext in (("seg", "seg", "png"), ("normal_mask", "normal_mask", "png"),
                                     ("depth", "depth", "npy"))[:len(folders) - 1]:
                lines = [f"/{split}/img/{n}.png /{split}/{folder}/{n}.{ext}" for n in names]
                if key == "normal_mask":  # no leading slash works too
                    lines = [line.replace("/", "", 1).replace(" /", " ") for line in lines]
                (root / "list" / f"{split}_{key}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def nddr(tmp_path) -> Path:
    return write_nddr(tmp_path / "nddr")


def test_sample_decoding_is_exact(nddr):
    dataset = NddrImages(nddr, "training")
    assert len(dataset) == 6 and dataset.size == (H, W) and dataset.num_classes == {"seg": 40}
    sample = dataset[1]
    assert set(sample) == {"image", "seg", "normal", "depth"}

    raw = torch.from_numpy(np.array(Image.open(nddr / "training" / "img" / "0002.png"))).permute(2, 0, 1) / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert sample["image"].shape == (3, H, W) and torch.allclose(sample["image"], (raw - mean) / std)

    labels = np.asarray(Image.open(nddr / "training" / "seg" / "0002.png"))
    assert sample["seg"].dtype == torch.int64 and sample["seg"].shape == (H, W)
    assert torch.equal(sample["seg"], torch.from_numpy(labels.astype(np.int64)))
    assert (sample["seg"][:4, :4] == 255).all() and int(sample["seg"][4:].max()) <= 39

    normal = sample["normal"]
    assert normal.dtype == torch.float32 and normal.shape == (3, H, W)
    for (r, c), (rgb, expected) in KNOWN.items():
        if expected == "grey":
            want = torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
        else:
            want = torch.zeros(3) if expected is None else torch.tensor(expected, dtype=torch.float32)
        assert torch.allclose(normal[:, r, c], want, atol=1e-6), (r, c)
    assert (normal[:, :4, :4] == 0).all()
    valid = normal.norm(dim=0) >= 0.5
    assert int((normal.abs().sum(0) > 0).sum()) == int(valid.sum()) + 2  # the two grey pixels are short
    assert torch.allclose(normal.norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-6)
    encoded = np.asarray(Image.open(nddr / "training" / "normal_mask" / "0002.png")).astype(np.float64)
    decoded = encoded / 127.5 - 1
    decoded /= np.linalg.norm(decoded, axis=-1, keepdims=True)
    assert np.allclose(normal.permute(1, 2, 0).numpy()[10:, 10:], decoded[10:, 10:], atol=1e-6)

    depth = np.load(nddr / "training" / "depth" / "0002.npy")
    assert sample["depth"].shape == (1, H, W) and torch.equal(sample["depth"][0], torch.from_numpy(depth))
    assert (sample["depth"][:, :4, :4] == 0).all()


def test_the_authors_normal_scoring_needs_nddr_encoded_and_grey_score(nddr):
    """NDDR-CNN, MTL-NAS and the Aux-NAS authors take the angle between the L2-normalised raw 8-bit label and the
    prediction over every pixel but (255, 255, 255), grey ones included: auxnas's metric with
    normal_angle=nddr_encoded and nddr_grey_normals=score is theirs (up to the renormalisation of valid labels)."""
    dataset = NddrImages(nddr, "testing")
    torch.manual_seed(0)
    preds = [torch.randn(1, 3, H, W) for _ in range(len(dataset))]
    theirs, is_grey, is_unit = [], [], []
    for files, pred in zip(dataset.files, preds, strict=True):
        label = np.asarray(Image.open(files["normal"])).astype(np.float64)
        encoded = F.normalize((F.normalize(pred[0].double(), dim=0) + 1) * 127.5, dim=0).permute(1, 2, 0).numpy()
        cos = (encoded * label / np.linalg.norm(label, axis=-1, keepdims=True)).sum(-1)
        keep = ~(label == 255).all(-1)
        theirs.append(np.degrees(np.arccos(np.clip(cos, -1, 1)))[keep])
        norms = np.linalg.norm(label / 127.5 - 1, axis=-1)
        is_grey.append((norms < 0.02)[keep])
        is_unit.append((np.abs(norms - 1) < 0.01)[keep])  # as every real label (KNOWN's are not)
    theirs, is_grey, is_unit = np.concatenate(theirs), np.concatenate(is_grey), np.concatenate(is_unit)
    assert is_grey.sum() == 2 * len(dataset)  # (127, 128, 127) and (127, 127, 127) in every file
    metrics = {}
    for option in ("score", "invalid"):
        metrics[option] = build_task("normal", {}, normal_angle="nddr_encoded", nddr_grey_normals=option).new_metric()
        for i, pred in enumerate(preds):
            metrics[option].update(pred, dataset[i]["normal"][None])
    ours = torch.cat([metrics["score"].pixel_angles(pred, dataset[i]["normal"][None])
                      for i, pred in enumerate(preds)]).double().numpy()
    assert metrics["invalid"].count == theirs.size - is_grey.sum() and ours.size == theirs.size
    assert np.abs(ours - theirs)[is_grey].max() < 1e-3  # the grey pixels exactly
    assert np.abs(ours - theirs)[is_unit].max() < 0.5  # the others up to the renormalisation of the decoded label
    assert is_unit.sum() == ours.size - 5 * len(dataset)


def test_list_files_read_the_same_images(tmp_path):
    root = write_nddr(tmp_path / "lists", lists=True)
    by_lists = NddrImages(root, "testing")
    assert [f["normal"].name for f in by_lists.files] == ["0001.png", "0002.png", "0003.png"]
    (root / "list").rename(root / "unused")
    by_folders = NddrImages(root, "testing")
    for a, b in zip(by_lists, by_folders, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_depth_is_optional(tmp_path):
    root = write_nddr(tmp_path / "nodepth", depth=False)
    assert tasks(DataConfig(name="nyuv2_nddr", root=str(root))) == ("seg", "normal")
    assert set(NddrImages(root, "training")[0]) == {"image", "seg", "normal"}
    with pytest.raises(ConfigError, match=r"tasks.aux\[0\]: dataset nyuv2_nddr has no 'depth' targets \(no .*nodepth/"
                                          r"training/depth\); it provides seg, normal"):
        validate(load_config("demo", ["data.name=nyuv2_nddr", f"data.root={root}", "tasks.primary=seg",
                                      "tasks.aux=[depth]"]))
    assert tasks(DataConfig(name="nyuv2_nddr", root=str(root.parent / "absent"))) == ("seg", "normal", "depth")


def test_splits_training_then_testing(nddr, capsys):
    train, val, test = open_splits(DataConfig(name="nyuv2_nddr", root=str(nddr)))
    assert (len(train), val, len(test)) == (6, None, 3)
    splits = build_splits(DataConfig(name="nyuv2_nddr", root=str(nddr), val_fraction=0.34), progress=True)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2, 3)
    assert splits.num_classes == {"seg": 40}
    assert "nyuv2_nddr at" in capsys.readouterr().out
    assert splits.train.augment and not splits.val.augment and not splits.test.augment


def test_augmentation_flips_normal_x_and_divides_depth_by_the_zoom(nddr):
    plain = NddrImages(nddr, "training")
    augmented = plain.subset(range(len(plain)), augment=True)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        draws = torch.rand(4).tolist()
        scale, flipped = SCALES[min(int(draws[0] * len(SCALES)), len(SCALES) - 1)], draws[3] < 0.5
        torch.manual_seed(seed)
        aug, ref = augmented[0], plain[0]
        if scale == 1.0 and flipped:
            assert torch.equal(aug["normal"][0], -ref["normal"][0].flip(-1))
            assert torch.equal(aug["normal"][1:], ref["normal"][1:].flip(-1))
            assert torch.equal(aug["seg"], ref["seg"].flip(-1)) and torch.equal(aug["depth"], ref["depth"].flip(-1))
        elif scale != 1.0 and not flipped:
            valid = aug["depth"] > 0
            zoomed = (aug["depth"][valid] * scale).numpy()
            originals = ref["depth"][ref["depth"] > 0].numpy()
            assert np.isclose(zoomed[:, None], originals[None], rtol=1e-6).any(axis=1).all()
            assert torch.equal(aug["seg"] == 255, ~valid[0])   # the invalid corners move together
        else:
            continue
        seen.add((scale == 1.0, flipped))
    assert seen == {(True, True), (False, False)}


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def test_errors_name_the_file_or_folder(tmp_path, nddr):
    with pytest.raises(FileNotFoundError, match=r"data.root: .*nowhere is not a folder \(expected the nyuv2_nddr "
                                                r"layout ROOT/\{training,testing\}"):
        NddrImages(tmp_path / "nowhere", "training")

    (nddr / "training" / "seg" / "0003.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"training/seg/0003\.png: missing file \(every img/NAME\.png"):
        NddrImages(nddr, "training")
    Image.fromarray(np.full((H, W), 40, np.uint8)).save(nddr / "training" / "seg" / "0003.png")
    with pytest.raises(ValueError, match=r"training/seg/0003\.png: labels must be classes 0\.\.39 or 255 "
                                         r"\(ignore\), got \[40\]"):
        NddrImages(nddr, "training")[2]

    _corrupt(nddr / "training" / "img" / "0001.png")
    with pytest.raises(ValueError, match=r"training/img/0001\.png: unreadable image file"):
        NddrImages(nddr, "training", size=(H, W))[0]
    Image.fromarray(np.zeros((H, W + 1, 3), np.uint8)).save(nddr / "training" / "img" / "0001.png")
    with pytest.raises(ValueError, match=r"training/img/0001\.png: expected an RGB image of shape \(24, 32, 3\), "
                                         r"got \(24, 33, 3\)"):
        NddrImages(nddr, "training", size=(H, W))[0]

    Image.fromarray(np.zeros((H, W), np.uint8)).save(nddr / "training" / "normal_mask" / "0002.png")
    with pytest.raises(ValueError, match=r"training/normal_mask/0002\.png: expected an 8-bit RGB image"):
        NddrImages(nddr, "training", size=(H, W))[1]
    np.save(nddr / "training" / "depth" / "0004.npy", np.ones((H, W - 1), np.float32))
    with pytest.raises(ValueError, match=r"training/depth/0004\.npy: expected a depth map of shape \(24, 32\)"):
        NddrImages(nddr, "training", size=(H, W))[3]
    np.save(nddr / "training" / "depth" / "0004.npy", -np.ones((H, W), np.float32))
    with pytest.raises(ValueError, match=r"training/depth/0004\.npy: depth must be finite and >= 0"):
        NddrImages(nddr, "training", size=(H, W))[3]
    _corrupt(nddr / "training" / "depth" / "0005.npy")
    with pytest.raises(ValueError, match=r"training/depth/0005\.npy: unreadable \.npy file"):
        NddrImages(nddr, "training", size=(H, W))[4]

    for file in (nddr / "testing" / "normal_mask").iterdir():
        file.unlink()
    (nddr / "testing" / "normal_mask").rmdir()
    with pytest.raises(FileNotFoundError, match=r"testing/normal_mask: missing folder \(the nyuv2_nddr layout is "):
        open_splits(DataConfig(name="nyuv2_nddr", root=str(nddr)))


def test_list_file_errors(tmp_path):
    root = write_nddr(tmp_path / "lists", lists=True, depth=False)
    seg_list = root / "list" / "training_seg.txt"
    lines = seg_list.read_text().splitlines()
    seg_list.write_text("\n".join([lines[0] + " extra", *lines[1:]]))
    with pytest.raises(ValueError, match=r"list/training_seg\.txt:1: expected 'IMAGE LABEL'"):
        NddrImages(root, "training")
    seg_list.write_text("\n".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(ValueError, match=r"list/training_normal_mask\.txt: line 1 lists image .*0001\.png, "
                                         r".*training_seg\.txt lists .*0002\.png"):
        NddrImages(root, "training")
    seg_list.write_text("\n".join([*lines[:-1], lines[-1].rsplit("0006", 1)[0] + "0099.png"]))
    with pytest.raises(FileNotFoundError, match=r"training/seg/0099\.png: missing file \(listed in "
                                                r".*list/training_seg\.txt\)"):
        NddrImages(root, "training")
    seg_list.unlink()
    with pytest.raises(FileNotFoundError, match=r"list/training_seg\.txt: missing list file"):
        NddrImages(root, "training")


def test_fit_one_epoch_end_to_end(tmp_path, nddr):
    cfg = load_config("demo", [
        "data.name=nyuv2_nddr", f"data.root={nddr}", "data.batch_size=4", "data.val_fraction=0.34",
        "tasks.primary=seg", "tasks.aux=[normal]", "method.name=aux_head", "model.backbone=tiny_resnet",
        "train.epochs=1", "train.device=cpu", f"out_dir={tmp_path / 'run'}",
    ])
    result = fit(cfg, progress=False)
    assert set(result.test_best) == {"seg", "normal"}
    assert math.isfinite(result.test_best["seg"]["miou"]) and math.isfinite(result.test_best["normal"]["mean_angle"])
