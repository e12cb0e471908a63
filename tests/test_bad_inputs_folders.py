"""Hostile folders: a command writes only into a folder that is empty or that it made for the same run, and reuses a
run only when its recorded identity (config content, data, float format) equals the new run's; an
out_dir or cache folder that cannot be written (a file in the way, read-only) is one line."""

import json
import os
import shutil

import pytest
import yaml
from bad_inputs import TRAIN, one_line_error
from test_data_folder import write_folder
from test_export import train_tiny

from auxnas.cli import main
from auxnas.compare.records import identity_fields, run_identity
from auxnas.config import load_config
from auxnas.demo import run_demo
from auxnas.export import export_primary
from auxnas.train import fit

#: a folder dataset's comparison, a few seconds a run
FOLDER = ["data.name=folder", "data.val_fraction=0.25", "data.batch_size=4", "tasks.primary=seg",
          "tasks.aux=[normal]", "tasks.loss_weights={seg: 1.0, normal: 1.0}", "model.backbone=tiny_resnet",
          "train.epochs=1", "train.device=cpu", "data.image_size=32", "train.lr=0.002"]


def snapshot(folder):
    """Every file under ``folder`` and its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One finished comparison on a config file of the user's and a folder dataset: (config, data root, out)."""
    tmp = tmp_path_factory.mktemp("folders")
    root = write_folder(tmp / "data", splits={"train": 8, "test": 4})
    config = tmp / "mine.yaml"
    config.write_text(yaml.safe_dump(load_config("demo", [*FOLDER, f"data.root={root}"]).to_dict()))
    assert main(["compare", str(config), "--methods", "aux_head", "--seeds", "2", "--out", str(tmp / "out"),
                 "--quiet"]) == 0
    return config, root, tmp / "out"


def compare_argv(config, out, *extra):
    return ["compare", str(config), *extra, "--methods", "aux_head", "--seeds", "2", "--out", str(out), "--quiet"]


def test_the_same_comparison_is_reused_whole(compared, capsys):
    config, _, out = compared
    assert main(compare_argv(config, out, "--reuse")) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert all(r["reused"] for r in summary["runs"]) and len(summary["runs"]) == 4
    assert all(len(r["identity"]) == 64 and r["data"]["train"]["images"] == 6 for r in summary["runs"])


@pytest.mark.parametrize("reuse", [[], ["--reuse"]], ids=["retrain", "reuse"])
def test_a_changed_override_is_refused_not_trained_over_the_earlier_runs(compared, capsys, reuse):
    config, _, out = compared
    before = snapshot(out)
    err = one_line_error(capsys, compare_argv(config, out, "train.lr=0.005", *reuse))
    assert "runs/single/seed0: holds another run (train.lr: recorded 0.002, now 0.005)" in err
    assert snapshot(out) == before


def test_an_edited_config_file_is_another_run_even_at_the_same_path(compared, capsys, tmp_path):
    config, _, out = compared
    edited = tmp_path / "out"
    shutil.copytree(out, edited)
    text = config.read_text()
    try:
        config.write_text(text.replace("lr: 0.002", "lr: 0.05"))
        before = snapshot(edited)
        err = one_line_error(capsys, compare_argv(config, edited, "--reuse"))
        assert "holds another run (train.lr: recorded 0.002, now 0.05)" in err
        assert snapshot(edited) == before
    finally:
        config.write_text(text)


def test_changed_data_are_another_run(compared, capsys, tmp_path):
    """Runs on 6 training images are never paired with runs on more: the data's fingerprint is in the identity."""
    config, root, out = compared
    copied = tmp_path / "out"
    shutil.copytree(out, copied)
    grown = tmp_path / "data"
    shutil.copytree(root, grown)
    for folder in (grown / "train").iterdir():  # two more training images, copies of the first ones
        for i, j in ((0, 8), (1, 9)):
            src = next(folder.glob(f"{i}.*"))
            shutil.copy(src, folder / f"{j}{src.suffix}")
    err = one_line_error(capsys, compare_argv(config, copied, f"data.root={grown}", "--reuse"))
    assert "holds another run (data.root: recorded" in err and "train: 6 images then, 8 now" in err


def test_an_unrelated_run_in_a_comparisons_run_folder_is_refused(tmp_path, capsys):
    """``compare --out DIR`` where ``DIR/runs/single/seed0`` holds a finished run of another config and data."""
    root = write_folder(tmp_path / "data", splits={"train": 8, "test": 4})
    other = train_tiny(tmp_path / "out" / "runs" / "single" / "seed0", {"name": "single"})
    before = snapshot(other)
    err = one_line_error(capsys, compare_argv("demo", tmp_path / "out", *FOLDER, f"data.root={root}"))
    assert f"{other}: holds another run (" in err and "choose another --out" in err
    assert snapshot(other) == before


def test_a_users_own_report_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.md").write_text("my notes")
    err = one_line_error(capsys, compare_argv("demo", out, *FOLDER, "data.root=unused"))
    assert f"{out / 'compare.md'}: exists and was not written by auxnas compare" in err
    (out / "report.md").write_text("my report")
    with pytest.raises(FileExistsError, match="report.md: exists and was not written by auxnas demo"):
        run_demo(out, quick=True, progress=False)
    assert (out / "compare.md").read_text() == "my notes" and (out / "report.md").read_text() == "my report"


def test_a_users_own_config_in_out_dir_is_not_taken_for_a_failed_start(tmp_path, capsys):
    """``auxnas train exp/config.yaml out_dir=exp`` with only the user's file there: refused without --overwrite."""
    exp = tmp_path / "exp"
    exp.mkdir()
    mine = "# my experiment\ntasks: {primary: normal}\ndata: {num_train: 16, num_test: 4, image_size: 32}\n" \
           "train: {epochs: 1, max_steps_per_epoch: 1}\nmodel: {backbone: tiny_resnet}\n"
    (exp / "config.yaml").write_text(mine)
    err = one_line_error(capsys, ["train", str(exp / "config.yaml"), f"out_dir={exp}", "--quiet"])
    assert f"{exp}: holds files (config.yaml)" in err
    assert (exp / "config.yaml").read_text() == mine
    # the resolved config.yaml of a start that failed is auxnas's own: the corrected command runs there again
    cfg = load_config(exp / "config.yaml", [f"out_dir={tmp_path / 'failed'}", "data.num_train=16"])
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    assert fit(cfg, progress=False).best_epoch == 1


def test_overwrite_removes_only_the_exports_of_the_run_it_replaces(tmp_path):
    run = train_tiny(tmp_path / "run", {"name": "single"})
    other = train_tiny(tmp_path / "other", {"name": "single"})
    export_primary(run, run / "own-export")
    export_primary(other, run / "other-export")  # an export of another run, placed inside this one
    train_tiny(run, {"name": "single"}, overwrite=True)
    assert not (run / "own-export").exists()
    assert (run / "other-export" / "model.safetensors").is_file()


def test_a_runs_identity_is_its_non_default_fields_its_data_and_float_format():
    """The identity formula is pinned: a change to it makes every recorded run another run (records made before it
    would train again). Fields at the schema's default stay out of it, so a field added later with its default
    leaves every earlier identity as it was."""
    assert identity_fields(load_config("quickstart", ["train.lr=0.001", "train.epochs=10", "name=x"])) == {
        key: value for key, value in identity_fields(load_config("quickstart")).items()
        if key not in ("train.lr", "train.epochs")}
    cfg = load_config("bench/ctrl-depth", ["method.name=aux_nas", "init.primary=/runs/single/seed0"])
    fields = identity_fields(cfg, {"/runs/single/seed0": "abc"})
    assert fields["init.primary"] == "abc" and "out_dir" not in fields and "method.p2a_init" not in fields
    data = {"train": {"images": 512, "fingerprint": "f"}}
    assert run_identity(cfg, data, "float32", {"/runs/single/seed0": "abc"}) == (
        "7aa1e458f259a9b981a7f625c09561520cd9fbe3cce52072ecc18fde446160f9")
    assert run_identity(cfg, data, "bfloat16") != run_identity(cfg, data, "float32")
    assert run_identity(cfg, data, "float32", declared={"edges": {"kind": "dense_regression"}}) != run_identity(
        cfg, data, "float32")


# -- folders that cannot be written: a file in the way, a read-only folder


ROOT = os.geteuid() == 0  # root writes into read-only folders: the read-only cases cannot be made here


def test_a_file_valued_out_dir_is_one_line(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    for out_dir in (file, file / "run"):
        err = one_line_error(capsys, [*TRAIN, f"out_dir={out_dir}"])
        assert str(out_dir) in err and "choose another out_dir" in err
    assert file.read_text() == "x"


@pytest.mark.skipif(ROOT, reason="root can write into a read-only folder")
def test_a_read_only_out_dir_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for out_dir in (folder, folder / "run"):
            err = one_line_error(capsys, [*TRAIN, f"out_dir={out_dir}"])
            assert str(out_dir) in err and "choose another out_dir" in err
    finally:
        folder.chmod(0o755)


def test_a_file_valued_cache_folder_is_one_line(tmp_path, capsys, monkeypatch):
    file = tmp_path / "file"
    file.write_text("x")
    for cache in (file, file / "cache"):
        monkeypatch.setenv("AUXNAS_CACHE", str(cache))
        err = one_line_error(capsys, [*TRAIN, f"out_dir={tmp_path / 'run-env'}", "--overwrite"])
        assert str(cache) in err and "set data.cache_dir or AUXNAS_CACHE to a writable folder" in err
        err = one_line_error(capsys, [*TRAIN, f"out_dir={tmp_path / 'run-key'}", f"data.cache_dir={cache}",
                                      "--overwrite"])
        assert str(cache) in err and "set data.cache_dir or AUXNAS_CACHE to a writable folder" in err
        err = one_line_error(capsys, ["data", "preview", "--out", str(tmp_path / "p.png"), "--image-size", "16",
                                      "--num", "2"])
        assert str(cache) in err and "AUXNAS_CACHE" in err
    assert file.read_text() == "x"


@pytest.mark.skipif(ROOT, reason="root can write into a read-only folder")
def test_a_read_only_cache_folder_is_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        for cache in (folder, folder / "cache"):
            monkeypatch.setenv("AUXNAS_CACHE", str(cache))
            err = one_line_error(capsys, [*TRAIN, f"out_dir={tmp_path / 'run'}", "--overwrite"])
            assert str(cache) in err and "set data.cache_dir or AUXNAS_CACHE to a writable folder" in err
    finally:
        folder.chmod(0o755)
