"""Export: what cutting the a2p links changes (``a2p_cut``), threshold validation, FLOPs of attention."""

import glob
import json
import math
import shutil

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import auxnas.export
from auxnas.backbones import VITS, build_branch
from auxnas.cli import main
from auxnas.config import config_from_dict
from auxnas.data import build_splits
from auxnas.engine.loaders import make_loader
from auxnas.engine.run_dir import RunDirectoryError
from auxnas.export import FORMATS, ExportError, export_primary, load_exported, run_format
from auxnas.measure import count_flops
from auxnas.storage import load_checkpoint, save_checkpoint
from auxnas.tasks import build_task
from auxnas.train import evaluate, fit, load_trained

NUM_VAL = 12  # 25 % of 48 training images


def train_tiny(out_dir, method: dict, overwrite: bool = False):
    """A 2-step run on 32 px images; returns its run directory."""
    cfg = config_from_dict({
        "name": "t", "out_dir": str(out_dir),
        "data": {"image_size": 32, "num_train": 48, "num_test": 8, "val_fraction": 0.25, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": [] if method["name"] == "single" else ["seg"]},
        "model": {"backbone": "tiny_resnet"},
        "method": method,
        "train": {"epochs": 1, "lr": 0.003, "max_steps_per_epoch": 2},
    })
    return fit(cfg, progress=False, overwrite=overwrite).out_dir


def test_a2p_cut_is_reported_for_a2p_links(tmp_path, capsys):
    run = train_tiny(tmp_path / "run", {"name": "aux_nas"})
    report = export_primary(run, tmp_path / "export")
    cut = report["a2p_cut"]
    assert cut["num_val_images"] == NUM_VAL and cut["images"] == "the whole validation split"
    assert 0.0 <= cut["max_abs_diff_val"] < math.inf
    # the cut model is what evaluation measures
    assert cut["val_metrics_cut"] == pytest.approx(evaluate(run, split="val", device="cpu", progress=False)["normal"])
    assert set(cut["val_metrics_uncut"]) == set(cut["val_metrics_cut"])
    assert json.loads((tmp_path / "export" / "export_report.json").read_text())["a2p_cut"] == cut

    assert main(["export", str(run), "--out", str(tmp_path / "cli")]) == 0
    assert f"max |uncut - cut| {cut['max_abs_diff_val']:.2e} on {NUM_VAL} validation images" in capsys.readouterr().out


def test_small_a2p_strengths_can_still_change_the_primary(tmp_path):
    """Strength 0.005 passes the threshold, but with large fusion weights the cut changes outputs and metrics."""
    run = train_tiny(tmp_path / "run", {"name": "aux_nas"})
    payload = load_checkpoint(run / "best.pt")
    generator = torch.Generator().manual_seed(0)
    for key, value in payload["model"].items():
        if key.startswith("primary_fusions.") and key.endswith(".proj.weight"):
            payload["model"][key] = 20 * torch.randn(value.shape, generator=generator)
        elif key.startswith("a2p.") and key.endswith(".logits"):
            payload["model"][key] = torch.full_like(value, math.log(0.005 / 0.995))
    edited = save_checkpoint(tmp_path / "edited.pt", payload)

    report = export_primary(edited, tmp_path / "export", threshold=0.01)
    assert all(report["checks"].values()) and not report["forced"]
    assert report["a2p_max"] == pytest.approx(0.005)
    cut = report["a2p_cut"]
    assert cut["max_abs_diff_val"] > 0.01
    assert abs(cut["val_metrics_uncut"]["mean_angle"] - cut["val_metrics_cut"]["mean_angle"]) > 0.01

    cfg, model, _ = load_trained(edited)
    val = next(iter(make_loader(build_splits(cfg.data, progress=False).val, NUM_VAL, False, cfg.seed)))["image"]
    with torch.no_grad():
        model.eval()
        diff = (model(val, cut_a2p=False)["normal"] - model(val)["normal"]).abs().max()
    assert cut["max_abs_diff_val"] == pytest.approx(float(diff), rel=1e-6)
    evaluated = evaluate(edited, split="val", device="cpu", progress=False)["normal"]
    assert cut["val_metrics_cut"] == pytest.approx(evaluated)


@pytest.mark.parametrize("method", [{"name": "aux_nas", "search": "p2a_only"}, {"name": "single"}])
def test_nothing_cut_without_a2p_links(tmp_path, method):
    run = train_tiny(tmp_path / "run", method)
    report = export_primary(run, tmp_path / "export", threshold=0.0)
    assert report["a2p_cut"] is None and report["threshold"] == 0.0
    assert json.loads((tmp_path / "export" / "export_report.json").read_text())["a2p_cut"] is None


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf, -0.1, 1.0, 1.5])
def test_threshold_outside_unit_interval_is_refused(tmp_path, threshold):
    with pytest.raises(ValueError, match=rf"finite number in \[0, 1\), got {threshold!r}"):
        export_primary(tmp_path / "missing", tmp_path / "export", threshold=threshold)


@pytest.mark.parametrize("text", ["nan", "inf", "-0.1", "1.0", "x"])
def test_cli_threshold_outside_unit_interval_is_refused(tmp_path, capsys, text):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path), "--out", str(tmp_path / "export"), "--threshold", text])
    assert exit_info.value.code == 2
    assert f"--threshold: expected a finite number in [0, 1), got {text!r}" in capsys.readouterr().err


def test_threshold_zero_refuses_every_searched_link_and_names_the_remedies(tmp_path):
    run = train_tiny(tmp_path / "run", {"name": "aux_nas"})
    remedies = r"longer, with a larger method\.arch_lr, or with method\.arch_schedule=constant"
    with pytest.raises(ExportError, match=remedies):
        export_primary(run, tmp_path / "export", threshold=0.0)
    assert export_primary(run, tmp_path / "forced", threshold=0.0, force=True)["forced"]


def vit_hand_count(batch: int, image_size: int, num_classes: int) -> int:
    """FLOPs (2 per multiply-add) of tiny_vit + a class-token linear head: patch embedding, per block the
    qkv, projection and MLP linears and the two attention matmuls (Q K^T, attention x V); biases,
    norms, softmax and activations are not counted."""
    spec = VITS["tiny_vit"]
    patch, dim, depth, heads = spec["patch_size"], spec["embed_dim"], spec["depth"], spec["num_heads"]
    patches = (image_size // patch) ** 2
    tokens, hidden, head_dim = patches + 1, 4 * dim, dim // heads
    patch_embed = 2 * patches * dim * 3 * patch * patch
    linears = 2 * tokens * (dim * 3 * dim + dim * dim + dim * hidden + hidden * dim)
    attention = 2 * heads * tokens * tokens * head_dim * 2
    head = 2 * dim * num_classes
    return batch * (patch_embed + depth * (linears + attention) + head)


def test_vit_flops_count_attention():
    branch = build_branch("tiny_vit", build_task("scene", {"scene": 5}), image_size=32)
    x = torch.randn(2, 3, 32, 32)
    assert count_flops(branch, x) == vit_hand_count(2, 32, 5) == 2 * 4_277_472
    # torch counts the unfused (math) attention itself, as batched matmuls: the same convention
    with sdpa_kernel(SDPBackend.MATH):
        assert count_flops(branch, x) == vit_hand_count(2, 32, 5)


def test_deployment_formats_match_pytorch_at_any_batch_size(tmp_path, capsys):
    run = train_tiny(tmp_path / "run", {"name": "aux_nas"})
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out), "--format", "torchscript", "onnx", "pt2"]) == 0
    printed = capsys.readouterr().out
    network = load_exported(out)
    images = torch.randn(5, 3, 32, 32)  # a batch size the export never saw
    with torch.no_grad():
        expected = network(images)
    for fmt, name in FORMATS.items():
        assert f"{fmt}: {out / name}" in printed
        written = json.loads((out / "export_report.json").read_text())["formats"][fmt]
        assert written["file"] == name and written["max_abs_diff"] <= 1e-4
        assert (run_format(fmt, out / name, images) - expected).abs().max() <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "run"]  # no staging folder left behind


def test_the_onnx_file_is_self_contained_when_copied_elsewhere(tmp_path, monkeypatch):
    """`cp DIR/* elsewhere/` gives a model onnxruntime runs: weights embedded, or (too large to embed) in a plainly
    named model.onnx.data beside it."""
    onnxruntime = pytest.importorskip("onnxruntime")
    run = train_tiny(tmp_path / "run", {"name": "single"})
    images = torch.randn(3, 3, 32, 32)
    for limit, files in ((auxnas.export.ONNX_EMBED_LIMIT, ["model.onnx"]), (0, ["model.onnx", "model.onnx.data"])):
        monkeypatch.setattr(auxnas.export, "ONNX_EMBED_LIMIT", limit)
        out, copy = tmp_path / f"export-{limit}", tmp_path / f"copy-{limit}"
        report = export_primary(run, out, formats=["onnx"])
        assert sorted(p.name for p in out.iterdir() if p.name.startswith("model.onnx")) == files
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # nothing hidden
        assert report["formats"]["onnx"]["files"] == files
        copy.mkdir()
        for path in glob.glob(str(out / "*")):  # what `cp DIR/* elsewhere/` copies: no hidden file
            shutil.copy(path, copy)
        shutil.rmtree(out)
        session = onnxruntime.InferenceSession(str(copy / "model.onnx"), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"image": images.numpy()})[0])
        with torch.no_grad():
            expected = load_exported(copy)(images)
        assert (got - expected).abs().max() <= 1e-4


def one_line_error(capsys, argv) -> str:
    """Run the CLI on ``argv``; it must fail with exit status 2 and one line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auxnas: error: ") and "\n" not in err, err
    return err


def test_an_existing_export_folder_is_refused_unless_overwrite(tmp_path, capsys):
    run = train_tiny(tmp_path / "run", {"name": "single"})
    out = tmp_path / "export"
    export_primary(run, out)
    written = sorted(p.name for p in out.iterdir())
    assert written == ["export_report.json", "exported.yaml", "model.safetensors"]
    err = one_line_error(capsys, ["export", str(run), "--out", str(out)])
    assert f"{out}: holds an earlier export (pass --overwrite" in err
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == written
    with pytest.raises(ValueError, match="unknown export format"):
        export_primary(run, tmp_path / "other", formats=["tflite"])


def test_overwrite_replaces_only_an_earlier_export_never_other_files(tmp_path, capsys):
    """Like `train --overwrite`, `export --overwrite` never deletes a file it did not write: it refuses instead."""
    run = train_tiny(tmp_path / "run", {"name": "single"})
    out = tmp_path / "export"
    export_primary(run, out)
    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()
    for flag in ([], ["--overwrite"]):
        err = one_line_error(capsys, ["export", str(run), "--out", str(out), *flag])
        assert f"{out}: holds files an export does not write (notes.txt, plots/)" in err and "--out" in err
    assert (out / "notes.txt").read_text() == "mine" and (out / "plots").is_dir()
    assert (out / "model.safetensors").is_file()


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_export_never_writes_into_or_over_a_run_folder(tmp_path, capsys):
    run = train_tiny(tmp_path / "run", {"name": "single"})
    assert {"config.yaml", "best.pt", "last.pt", "metrics.json", "tensorboard"} <= {p.name for p in run.iterdir()}
    other = shutil.copytree(run, tmp_path / "other-run")  # another training run
    before = snapshot(tmp_path)
    for flag in ([], ["--overwrite"]):
        for source in (run, run / "best.pt"):
            err = one_line_error(capsys, ["export", str(source), "--out", str(run), *flag])
            assert f"{run}: holds a training run (config.yaml, " in err and "best.pt" in err
            assert "choose another --out" in err
            assert "export folder" not in err and "pass --overwrite" not in err
        err = one_line_error(capsys, ["export", str(run), "--out", str(other), *flag])
        assert f"{other}: holds a training run" in err
        err = one_line_error(capsys, ["export", str(run), "--out", str(tmp_path), *flag])  # a folder holding the run
        assert f"{tmp_path}: holds {run}, which this export reads" in err and "choose another --out" in err
    assert snapshot(tmp_path) == before
    assert main(["export", str(run), "--out", str(run / "export")]) == 0  # a new folder inside the run is fine
    kept = {k: v for k, v in snapshot(tmp_path).items() if k.parts[:2] != ("run", "export")}
    assert kept == before


def test_training_over_a_run_removes_the_exports_made_from_it_and_keeps_other_folders(tmp_path):
    """An export inside a run folder is of that run's model: retrained with overwrite, the folder must not keep
    an export that would pass for the new run's."""
    run = train_tiny(tmp_path / "run", {"name": "single"})
    export_primary(run, run / "export")
    export_primary(run, run / "deploy", formats=["torchscript"])
    (run / "plots").mkdir()
    (run / "plots" / "export_report.json").write_text("{}")  # not an export: it holds another file
    (run / "plots" / "curve.png").write_bytes(b"png")
    with pytest.raises(RunDirectoryError, match="holds files"):
        train_tiny(run, {"name": "single"})
    assert (run / "export" / "model.safetensors").is_file()
    train_tiny(run, {"name": "single"}, overwrite=True)
    assert not (run / "export").exists() and not (run / "deploy").exists()
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["curve.png", "export_report.json"]
    assert (run / "best.pt").is_file() and (run / "metrics.json").is_file()


def test_a_failed_export_leaves_no_folder_behind(tmp_path, monkeypatch):
    run = train_tiny(tmp_path / "run", {"name": "single"})

    def broken(network, example, fmt, path, min_side=None):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(auxnas.export, "write_format", broken)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_primary(run, tmp_path / "export", formats=["onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("tamper, message", [
    (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 20), "model.safetensors: unreadable safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-100]),
     "model.safetensors: unreadable safetensors"),
    (lambda d: (d / "exported.yaml").write_text("backbone: [unclosed"), "exported.yaml: not valid YAML"),
    (lambda d: (d / "exported.yaml").write_bytes(b"\xff\xfe\x00binary"), "exported.yaml: not valid YAML"),
    (lambda d: (d / "exported.yaml").write_text("- a list"), "exported.yaml: expected a mapping"),
    (lambda d: (d / "exported.yaml").write_text((d / "exported.yaml").read_text().replace("task: normal\n", "")),
     "exported.yaml: task: missing"),
    (lambda d: (d / "exported.yaml").write_text((d / "exported.yaml").read_text().replace(
        "backbone: tiny_resnet", "backbone: resnet18")), "model.safetensors: weights do not match"),
    (lambda d: (d / "exported.yaml").write_text((d / "exported.yaml").read_text().replace(
        "backbone: tiny_resnet", "backbone: nope")), "exported.yaml: does not describe a network"),
    (lambda d: (d / "model.safetensors").unlink(), "model.safetensors: missing"),
])
def test_a_tampered_export_folder_is_one_line_naming_the_file(tmp_path, tamper, message):
    run = train_tiny(tmp_path / "run", {"name": "single"})
    out = tmp_path / "export"
    export_primary(run, out)
    tamper(out)
    with pytest.raises((ExportError, FileNotFoundError), match=message):
        load_exported(out)
