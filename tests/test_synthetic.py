"""Synthetic scenes: determinism, label consistency with the geometry, caching, augmentation, preview."""

import math

import numpy as np
import pytest
import torch

from auxnas.data import synthetic
from auxnas.data.preview import save_preview
from auxnas.data.synthetic import (
    DISPARITY_SCALE,
    FORMAT_VERSION,
    IGNORE_INDEX,
    LAYOUT_CLASSES,
    SEG_CLASSES,
    SyntheticScenes,
    generate_scenes,
    intrinsics,
    layout_labels,
)


@pytest.fixture(scope="module")
def scenes():
    return generate_scenes(12, 48, seed=3, progress=False)


def test_deterministic_and_index_consistent(scenes):
    again = generate_scenes(12, 48, seed=3, progress=False)
    for key in scenes:
        assert np.array_equal(scenes[key], again[key])
    tail = generate_scenes(4, 48, seed=3, first_index=8, progress=False)
    assert np.array_equal(tail["image"], scenes["image"][8:])
    other = generate_scenes(2, 48, seed=4, progress=False)
    assert not np.array_equal(other["image"], scenes["image"][:2])
    test_split = generate_scenes(2, 48, seed=3, split="test", progress=False)
    assert not np.array_equal(test_split["image"], scenes["image"][:2])


def test_labels_are_consistent(scenes):
    assert len(SEG_CLASSES) >= 8
    seg, depth, normal = scenes["seg"], scenes["depth"], scenes["normal"]
    valid = seg != IGNORE_INDEX
    assert set(np.unique(seg[valid])) <= set(range(len(SEG_CLASSES)))
    assert (depth[valid] > 0).all() and (depth[~valid] == 0).all()
    norms = np.linalg.norm(normal, axis=-1)
    assert np.allclose(norms[valid], 1.0, atol=1e-4) and (norms[~valid] == 0).all()
    disparity = scenes["disparity"]
    assert np.allclose(disparity[valid] * depth[valid], DISPARITY_SCALE, rtol=1e-5)
    assert (disparity[~valid] == 0).all()
    assert scenes["object"].min() >= 0 and scenes["object"].max() < len(synthetic.OBJECT_CLASSES)
    assert scenes["scene"].min() >= 0 and scenes["scene"].max() < len(synthetic.SCENE_CLASSES)
    # normals face the camera: negative dot product with the viewing ray
    size = seg.shape[-1]
    f, c = intrinsics(float(scenes["fov"][0]), size)
    rows, cols = np.mgrid[0:size, 0:size]
    rays = np.stack([(cols - c) / f, (rows - c) / f, np.ones_like(rows, dtype=float)], -1)
    assert ((normal[0] * rays).sum(-1)[valid[0]] < 0).all()


def test_normals_agree_with_depth_on_planar_regions(scenes):
    errors = []
    for k in range(len(scenes["seg"])):
        seg, depth, normal = scenes["seg"][k], scenes["depth"][k], scenes["normal"][k]
        size = seg.shape[0]
        f, c = intrinsics(float(scenes["fov"][k]), size)
        rows, cols = np.mgrid[0:size, 0:size]
        points = np.stack([(cols - c) / f * depth, (rows - c) / f * depth, depth], -1)
        du = points[1:-1, 2:] - points[1:-1, :-2]
        dv = points[2:, 1:-1] - points[:-2, 1:-1]
        estimate = np.cross(du, dv)
        estimate /= np.linalg.norm(estimate, axis=-1, keepdims=True).clip(1e-12)
        given = normal[1:-1, 1:-1]
        # planar: the 3x3 neighbourhood has one label and one normal (floor, walls, ceiling, box faces)
        same = np.ones_like(given[..., 0], dtype=bool)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                window = normal[1 + dr : size - 1 + dr, 1 + dc : size - 1 + dc]
                same &= (seg[1 + dr : size - 1 + dr, 1 + dc : size - 1 + dc] == seg[1:-1, 1:-1])
                same &= np.abs(window - given).max(-1) < 1e-6
        same &= seg[1:-1, 1:-1] != IGNORE_INDEX
        cos = np.abs((estimate * given).sum(-1))[same]
        errors.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    errors = np.concatenate(errors)
    assert errors.size > 1000
    assert np.median(errors) < 1.0
    assert np.percentile(errors, 95) < 5.0


def test_cache_is_reused_and_versioned(tmp_path, monkeypatch):
    first = SyntheticScenes("train", 6, 32, cache_dir=tmp_path, progress=False)
    assert first.cache_path.is_file() and f"v{FORMAT_VERSION}" in first.cache_path.name

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(synthetic, "generate_scenes", fail)
    second = SyntheticScenes("train", 6, 32, cache_dir=tmp_path, progress=False)
    assert torch.equal(first[3]["image"], second[3]["image"])


def test_corrupt_cache_is_regenerated(tmp_path):
    first = SyntheticScenes("test", 4, 32, cache_dir=tmp_path, progress=False)
    first.cache_path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="not a cache of these scenes \\(unreadable"):
        again = SyntheticScenes("test", 4, 32, cache_dir=tmp_path, progress=False)
    assert torch.equal(first[0]["seg"], again[0]["seg"])


@pytest.mark.parametrize("change, problem", [
    (lambda a: a.pop("format_version"), "format_version None, expected"),
    (lambda a: a.update(format_version=np.array(1)), "format_version 1, expected"),
    (lambda a: a.pop("scene"), "arrays "),
    (lambda a: a.update(seg=a["seg"][:, :16]), r"seg is uint8 \(4, 16, 32\), expected uint8 \(4, 32, 32\)"),
    (lambda a: a.update(depth=a["depth"].astype(np.float64)), "depth is float64"),
])
def test_a_foreign_npz_at_the_cache_name_is_regenerated_with_a_warning(tmp_path, change, problem):
    first = SyntheticScenes("test", 4, 32, cache_dir=tmp_path, progress=False)
    with np.load(first.cache_path) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    np.savez(first.cache_path, **arrays)
    with pytest.warns(UserWarning, match=problem):
        again = SyntheticScenes("test", 4, 32, cache_dir=tmp_path, progress=False)
    assert torch.equal(first[1]["normal"], again[1]["normal"]) and torch.equal(first[2]["seg"], again[2]["seg"])
    with np.load(first.cache_path) as data:  # rewritten as a valid cache
        assert int(data["format_version"]) == synthetic.FORMAT_VERSION


def test_sample_format_and_flip_augmentation(tmp_path):
    plain = SyntheticScenes("train", 4, 32, cache_dir=tmp_path, progress=False)
    sample = plain[0]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert sample["seg"].dtype == torch.int64 and sample["normal"].shape == (3, 32, 32)
    assert sample["depth"].shape == sample["disparity"].shape == (1, 32, 32)
    assert sample["object"].ndim == 0 and sample["scene"].ndim == 0
    augmented = plain.subset([0], augment=True)
    flipped = None
    for seed in range(20):
        torch.manual_seed(seed)
        candidate = augmented[0]
        if not torch.equal(candidate["seg"], sample["seg"]):
            flipped = candidate
            break
    assert flipped is not None
    assert torch.equal(flipped["seg"], sample["seg"].flip(-1))
    assert torch.equal(flipped["layout"], sample["layout"].flip(-1))
    assert torch.allclose(flipped["normal"][0], -sample["normal"][0].flip(-1))
    assert torch.allclose(flipped["normal"][1:], sample["normal"][1:].flip(-1))


def test_subset_views_without_copy(tmp_path):
    full = SyntheticScenes("train", 8, 32, cache_dir=tmp_path, progress=False)
    view = full.subset([5, 2], augment=False)
    assert len(view) == 2 and torch.equal(view[0]["depth"], full[5]["depth"])
    assert view.num_classes == {"seg": 9, "object": 6, "scene": 5, "layout": 4}


def test_layout_is_seg_in_four_coarse_classes(tmp_path):
    assert LAYOUT_CLASSES == ("floor", "wall", "ceiling", "object")
    seg = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, IGNORE_INDEX]], dtype=np.uint8)
    assert layout_labels(seg).tolist() == [[0, 1, 2, 3, 3], [3, 3, 3, 3, IGNORE_INDEX]]
    scenes = SyntheticScenes("train", 4, 32, cache_dir=tmp_path, progress=False)
    assert np.array_equal(scenes.arrays["layout"], layout_labels(scenes.arrays["seg"]))
    sample = scenes[1]
    assert sample["layout"].dtype == torch.int64 and torch.equal(sample["layout"], torch.from_numpy(
        layout_labels(sample["seg"].numpy().astype(np.uint8)).astype(np.int64)))
    with np.load(scenes.cache_path) as data:  # derived at load time: the cache format is unchanged
        assert "layout" not in data.files
    again = SyntheticScenes("train", 4, 32, cache_dir=tmp_path, progress=False)  # read from the cache
    assert np.array_equal(again.arrays["layout"], scenes.arrays["layout"])


def test_preview_png(tmp_path):
    dataset = SyntheticScenes("train", 4, 32, cache_dir=tmp_path, progress=False)
    path = save_preview(dataset, tmp_path / "out" / "preview.png", num_images=3)
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_images": 0}, "num_images"), ({"image_size": 8}, "image_size"), ({"split": "val"}, "split"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"split": "train", "num_images": 2, "image_size": 32, "cache_dir": tmp_path} | kwargs
    with pytest.raises(ValueError, match=message):
        SyntheticScenes(**args)


def test_intrinsics():
    f, c = intrinsics(90.0, 64)
    assert f == pytest.approx(32.0) and c == pytest.approx(31.5)
    assert math.isclose(intrinsics(60.0, 32)[0], 16 / math.tan(math.radians(30)))
