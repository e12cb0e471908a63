"""Hostile runs to resume: a run directory that cannot be resumed as it is (a broken config, a finished run without
its last checkpoint, other data, a failed start, a folder that cannot be written) is one line saying what to do,
and an interrupt advises only a resume that works."""

import os
from pathlib import Path

import pytest
from bad_inputs import TRAIN, one_line_error
from test_data_folder import write_folder

import auxnas.train
from auxnas.cli import main


@pytest.mark.parametrize(("content", "expected"), [
    (b"name: x\ntrain: {epochs: 2\nseed: [\n", "not valid YAML"),
    (b"name: caf\xe9\n", "not UTF-8"),
])
def test_a_broken_run_config_on_resume_is_one_line(tmp_path, capsys, content, expected):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(content)
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert str(run / "config.yaml") in err and expected in err and "--overwrite" in err


def test_resuming_a_finished_run_without_its_last_checkpoint_says_it_finished(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, f"out_dir={run}"]) == 0
    capsys.readouterr()
    (run / "last.pt").unlink()
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert f"{run}: the run finished (metrics.json) but its last.pt is missing" in err
    assert "stopped before its first epoch" not in err


@pytest.mark.parametrize(("env", "saved", "expected"), [
    ({}, False, "interrupted before the first epoch ended: nothing to resume from"),
    ({}, True, "continue with: auxnas train --resume {run}"),
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4"}, True,
     "continue with: torchrun --nproc_per_node 4 -m auxnas train --resume {run}"),
    ({"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}, True,
     "continue with: torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port PORT --nproc_per_node 8 -m "
     "auxnas train --resume {run} (on each node)"),
])
def test_the_interrupt_hint_advises_only_a_resume_that_works(tmp_path, capsys, monkeypatch, env, saved, expected):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    run.mkdir()
    if saved:
        (run / "last.pt").write_bytes(b"")
    monkeypatch.setattr(auxnas.train, "fit", interrupted)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main([*TRAIN, f"out_dir={run}"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "auxnas: interrupted; " + expected.format(run=run) if saved else expected in err
    assert saved or "--resume" not in err


def test_resuming_on_other_data_is_refused(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 10, "test": 4})
    run = tmp_path / "run"
    train = ["train", "demo", "data.name=folder", f"data.root={root}", "data.val_fraction=0.2", "data.batch_size=4",
             "tasks.primary=seg", "tasks.aux=[normal]", "method.name=aux_head", "model.backbone=tiny_resnet",
             "train.epochs=1", f"out_dir={run}", "--quiet"]
    assert main(train) == 0
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # the same data: resumes (a finished run ends)
    capsys.readouterr()
    for path in (root / "train").glob("*/9.*"):
        path.rename(path.with_stem("x9"))  # the same count, another image
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert f"{run / 'data.json'}: the data differ" in err and "train: 8 images then and now, but not the same" in err
    for path in (root / "train").glob("*/x9.*"):
        path.unlink()
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert "train: 8 images then, 7 now" in err


def test_a_run_that_failed_before_its_first_epoch_ended_is_simply_run_again(tmp_path, capsys):
    root = write_folder(tmp_path / "data", splits={"train": 8, "val": 4, "test": 4})
    (root / "val" / "seg").rename(tmp_path / "seg")
    (root / "val" / "seg").mkdir()
    run = tmp_path / "run"
    train = ["train", "demo", "data.name=folder", f"data.root={root}", "data.batch_size=4", "tasks.primary=seg",
             "tasks.aux=[normal]", "method.name=aux_head", "model.backbone=tiny_resnet", "train.epochs=1",
             f"out_dir={run}", "--quiet"]
    one_line_error(capsys, train)
    assert (run / "config.yaml").is_file()  # the failed start wrote its config
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert "no last.pt to resume from" in err and "reused without --overwrite" in err
    (root / "val" / "seg").rmdir()
    (tmp_path / "seg").rename(root / "val" / "seg")
    assert main(train) == 0  # the corrected command runs again in the same folder, no --overwrite
    assert (run / "metrics.json").is_file()
    err = one_line_error(capsys, train)  # a run that finished an epoch is never replaced without --overwrite
    assert "holds files" in err


def test_resuming_in_a_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only file system (os.access says so, even for root): refused before anything starts writing, so no
    background writer thread fails after the error line."""
    import auxnas.engine.run_dir

    run = tmp_path / "run"
    assert main([*TRAIN, f"out_dir={run}"]) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    real_access = os.access
    monkeypatch.setattr(auxnas.engine.run_dir.os, "access",
                        lambda path, mode: False if Path(path) == run else real_access(path, mode))
    err = one_line_error(capsys, ["train", "--resume", str(run)])
    assert f"{run}: cannot be written" in err and "copy the run folder" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
