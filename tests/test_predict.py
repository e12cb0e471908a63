"""The exported network's contract (exported.yaml), ONNX at any image size, and ``auxnas predict``."""

import json

import numpy as np
import pytest
import torch
import yaml
from bad_inputs import one_line_error
from PIL import Image

from auxnas.cli import main
from auxnas.config import config_from_dict
from auxnas.export import export_primary, load_exported
from auxnas.predict import preprocess
from auxnas.train import fit


def train(out_dir, primary: str, backbone: str = "tiny_resnet"):
    """A 2-step single-task run on 32 px images."""
    return fit(config_from_dict({
        "name": "t", "out_dir": str(out_dir), "model": {"backbone": backbone},
        "data": {"image_size": 32, "num_train": 24, "num_test": 8, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": primary}, "train": {"epochs": 1, "max_steps_per_epoch": 2},
    }), progress=False).out_dir


def write_images(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seg")
    run = train(tmp / "run", "seg")
    report = export_primary(run, tmp / "export", formats=["onnx"])
    return tmp / "export", report


def test_the_contract_is_written_down_and_onnx_takes_any_image_size(seg_export):
    export, report = seg_export
    contract = yaml.safe_load((export / "exported.yaml").read_text())["contract"]
    assert contract["input"] | {"height": None, "width": None} == {
        "name": "image", "layout": "NCHW", "dtype": "float32", "channels": "RGB", "height": None, "width": None,
        "trained_at": 32}
    assert contract["input"]["height"] == contract["input"]["width"] == ">= 2"
    assert contract["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert contract["output"]["kind"] == "segmentation" and "argmax" in contract["output"]["meaning"]
    onnx = report["formats"]["onnx"]
    assert onnx["dynamic_image_size"] and onnx["image_sizes_checked"] == [[32, 32], [64, 96]]
    import onnxruntime

    network = load_exported(export)
    session = onnxruntime.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    for size in ((48, 80), (33, 57)):  # sizes the export did not check, one odd
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected = network(x)
        got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
        assert got.shape == expected.shape == (2, 9, *size)
        assert float((got - expected).abs().max()) < 1e-4


def test_a_vit_states_its_fixed_size(tmp_path):
    run = train(tmp_path / "run", "normal", backbone="tiny_vit")
    report = export_primary(run, tmp_path / "export", formats=["onnx"])
    contract = yaml.safe_load((tmp_path / "export" / "exported.yaml").read_text())["contract"]
    assert contract["input"]["height"] == contract["input"]["width"] == 32
    assert not report["formats"]["onnx"]["dynamic_image_size"]
    assert preprocess(torch.rand(3, 40, 50), contract).shape == (1, 3, 32, 32)  # resized to the network's size


def test_predict_writes_class_maps_at_each_images_own_size(seg_export, tmp_path, capsys):
    export, _ = seg_export
    images = write_images(tmp_path / "images", [(40, 60), (32, 32)])
    assert main(["predict", str(export), *map(str, images), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    network = load_exported(export)
    for path in images:
        mask = np.array(Image.open(tmp_path / "pred" / f"{path.stem}.png"))
        rgb = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 255
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        with torch.no_grad():
            expected = network(((rgb - mean) / std)[None])[0].argmax(0).numpy()
        assert mask.shape == expected.shape == rgb.shape[1:] and mask.dtype == np.uint8
        assert (mask == expected).all()
    err = one_line_error(capsys, ["predict", str(export), str(images[0]), "--out", str(tmp_path / "pred")])
    assert f"{tmp_path / 'pred'}: holds files of its own" in err


def test_predict_writes_unit_normals_and_image_level_classes(tmp_path):
    images = write_images(tmp_path / "images", [(36, 44)])
    for primary in ("normal", "scene"):
        run = train(tmp_path / primary, primary)
        export_primary(run, tmp_path / f"{primary}-export")
        assert main(["predict", str(tmp_path / f"{primary}-export"), str(images[0]), "--out",
                     str(tmp_path / f"{primary}-pred"), "--quiet"]) == 0
    normals = np.load(tmp_path / "normal-pred" / "img0.npy")
    assert normals.shape == (36, 44, 3) and np.allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-4)
    scene = json.loads((tmp_path / "scene-pred" / "predictions.json").read_text())["img0"]
    assert 0 <= scene["class"] < len(scene["probabilities"]) and abs(sum(scene["probabilities"]) - 1) < 1e-4


def test_predict_refuses_what_it_cannot_read(seg_export, tmp_path, capsys):
    export, _ = seg_export
    err = one_line_error(capsys, ["predict", str(export), str(tmp_path / "missing.png"), "--out", str(tmp_path / "p")])
    assert "missing.png: no such image file" in err
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    images = [*write_images(tmp_path / "a" / "x", [(32, 32)]), *write_images(tmp_path / "b" / "x", [(32, 32)])]
    err = one_line_error(capsys, ["predict", str(export), *map(str, images), "--out", str(tmp_path / "q")])
    assert "share a name" in err
