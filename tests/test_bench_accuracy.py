"""The accuracy benchmark's smoke preset: its outputs, its statistics, its noise control and its equal budgets, and
its reuse of finished runs and of their records alone (read-only, copied, trained in parallel processes)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from bench_accuracy_helpers import _copy_records, _no_training

import auxnas.compare.execute
import auxnas.engine.state
from auxnas.bench.accuracy import run_accuracy_benchmark
from auxnas.bench.presets import (
    CEILING,
)
from auxnas.compare.records import reused_record
from auxnas.config import load_config
from auxnas.data import RandomTargets, build_splits
from auxnas.stats import paired_interval

ROWS_RUN = ["single", "aux_nas", "aux_nas-random_aux"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One smoke benchmark with the noise row added, counting each run's network-optimiser steps."""
    root = tmp_path_factory.mktemp("bench")
    steps: list[int] = []
    build_optimizer = auxnas.engine.state.build_optimizer

    def counting_optimizer(params, cfg, betas=(0.9, 0.999)):
        optimizer = build_optimizer(params, cfg, betas)
        if isinstance(params[0], dict):  # fit's network optimiser (parameter groups); not the architecture one
            steps.append(0)
            index = len(steps) - 1
            optimizer.register_step_post_hook(lambda *_: steps.__setitem__(index, steps[index] + 1))
        return optimizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))
        patch.setattr(auxnas.engine.state, "build_optimizer", counting_optimizer)
        summary = run_accuracy_benchmark("smoke", root / "out", root / "runs", progress=False, rows=ROWS_RUN)
    return summary, root, steps


def test_smoke_writes_json_and_markdown(bench):
    summary, root, _ = bench
    written = json.loads((root / "out" / "accuracy-smoke.json").read_text())
    assert written["table"] == summary["table"]
    assert [r["label"] for r in written["rows"]] == ROWS_RUN
    assert len(written["runs"]) == len(ROWS_RUN) * len(written["seeds"]) == 6
    for run in written["runs"]:
        assert {"seed", "row", "setting", "test_best", "test_last", "best_epoch", "wall_time_s", "link_strengths",
                "overrides", "command", "network_updates"} <= set(run)
        assert run["command"].startswith("auxnas train bench/a-small ")  # the setting's packaged config
        assert load_config("bench/a-small", run["overrides"]).out_dir == run["run_dir"]  # they reproduce the run
    assert written["runs"][0]["link_strengths"] is None
    assert "a2p/normal" in next(r for r in written["runs"] if r["row"] == "aux_nas")["link_strengths"]
    info = written["settings"]["a-small"]
    assert (info["train_images"], info["val_images"]) == (16, 4)
    assert info["loss_weights"] == {"seg": 1.0, "normal": 4.0}
    assert written["wall_time_s"] > 0
    assert "ceiling" not in json.dumps([r["row"] for r in written["runs"]])  # seg has every label in a-small
    assert not written["settings"]["a-small"]["ceiling"] and CEILING not in written["table"]["a-small"]
    assert written["controls"] == {"row": "aux_head", "settings": {}, "passed": None}
    markdown = (root / "out" / "accuracy-smoke.md").read_text()
    assert markdown == written["markdown"]
    assert "**No positive control ran**" in markdown
    for label in ROWS_RUN:
        assert f"| {label} |" in markdown
    assert "4 validation images" in markdown


def test_intervals_recomputed_from_recorded_values(bench):
    summary, _, _ = bench
    table = summary["table"]["a-small"]
    runs = sorted(summary["runs"], key=lambda r: r["seed"])
    for row in ("aux_nas", "aux_nas-random_aux"):
        for which in ("best", "last"):
            for metric, cell in table[row][which].items():
                values = [r[f"test_{which}"][metric] for r in runs if r["row"] == row]
                base = [r[f"test_{which}"][metric] for r in runs if r["row"] == "single"]
                assert cell["values"] == values
                interval = paired_interval(values, base)
                assert cell["vs_single"] == {**interval, "outcome": cell["vs_single"]["outcome"]}
                # better / worse only when the interval excludes 0
                assert (cell["vs_single"]["outcome"] == "no difference") == (interval["low"] <= 0 <= interval["high"])
    assert table["single"]["best"]["miou"]["vs_single"] is None
    assert table["single"]["delta_m"]["best"]["mean"] == pytest.approx(0.0, abs=1e-9)
    # each link's strength per stage, averaged over seeds, and shown under the setting's table
    nas = [r["link_strengths"] for r in runs if r["row"] == "aux_nas"]
    for key in ("p2a/normal", "a2p/normal"):
        assert table["aux_nas"]["link_strengths"][key] == pytest.approx(
            [statistics.fmean(values) for values in zip(*(run[key] for run in nas))])
    assert "link_strengths" not in table["single"]
    shown = next(line for line in summary["markdown"].splitlines() if line.startswith("- aux_nas: "))
    assert "p2a/normal " in shown and "a2p/normal " in shown


def test_noise_row_trains_on_random_targets(bench):
    summary, _, _ = bench
    noise = [r for r in summary["runs"] if r["row"] == "aux_nas-random_aux"]
    assert noise and all(r["random_targets"] == ["normal"] for r in noise)
    assert all(r["random_targets"] == [] for r in summary["runs"] if r["row"] != "aux_nas-random_aux")
    cfg = load_config("bench/a-small", noise[0]["overrides"])
    assert cfg.data.random_targets == ["normal"]
    splits = build_splits(cfg.data, progress=False)
    assert isinstance(splits.train, RandomTargets)
    assert not torch.equal(splits.train[0]["normal"], splits.train.dataset[0]["normal"])


def test_every_row_makes_the_same_number_of_network_updates(bench):
    summary, _, steps = bench
    runs = summary["runs"]
    assert steps == [r["network_updates"] for r in runs]  # counted optimiser steps, in run order
    assert len(set(steps)) == 1 and steps[0] == summary["settings"]["a-small"]["network_updates"] == 2
    by_row = {r["row"]: r for r in runs}
    assert by_row["aux_nas"]["bilevel"] and by_row["aux_nas"]["epochs"] == 2 * by_row["single"]["epochs"]


def test_reuse_reads_finished_runs_and_trains_only_changed_ones(bench, monkeypatch, tmp_path_factory):
    summary, root, _ = bench
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))

    again = run_accuracy_benchmark("smoke", root / "again", root / "runs", progress=False, rows=ROWS_RUN, reuse=True,
                                   trainer=_no_training)
    assert again["table"] == summary["table"]
    assert again["reused_runs"] == len(again["runs"]) == 6
    assert again["run_time_s"] == pytest.approx(sum(r["wall_time_s"] for r in summary["runs"]))
    assert "6 of 6 runs reused" in again["markdown"]
    with pytest.raises(AssertionError, match="trained again"):  # another seed is a run not made yet
        run_accuracy_benchmark("smoke", root / "again", root / "runs", progress=False, rows=ROWS_RUN, seeds=[7],
                               reuse=True, trainer=_no_training)


def test_a_run_recorded_from_other_overrides_of_the_same_config_is_reused(bench, monkeypatch, tmp_path_factory):
    """Reuse matches the resolved config, not the override list: a record made from the demo config with the
    setting's overrides (as the benchmark wrote them before its settings became configs) is the same run."""
    summary, root, _ = bench
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))
    run = next(r for r in summary["runs"] if r["row"] == "single" and r["seed"] == 0)
    config = "bench/a-small"
    assert reused_record(run["run_dir"], config, run["overrides"]) is not None
    record_file = Path(run["run_dir"]) / "bench_run.json"
    record = json.loads(record_file.read_text())
    # the setting as the benchmark spelt it before: the demo config and overrides
    spelt = ["data.seed=0", "data.image_size=32", "data.num_test=200", "data.batch_size=16", "data.augment=true",
             "model.backbone=tiny_resnet", "train.optimizer=adam", "train.lr=0.002", "train.schedule=poly",
             "tasks.primary=seg", "tasks.aux=[normal]", "tasks.loss_weights={seg: 1.0, normal: 4.0}",
             "data.num_train=256", "data.val_fraction=0.5", "train.epochs=12"]
    old = {**record, "command": "auxnas train demo ...", "overrides": [*spelt, *run["overrides"]]}
    record_file.write_text(json.dumps(old))
    try:
        assert reused_record(run["run_dir"], config, run["overrides"]) is not None
        other = [*run["overrides"], "train.lr=0.003"]  # another run: not reused
        assert reused_record(run["run_dir"], config, other) is None
        faster = [*run["overrides"], "train.channels_last=true", "train.tensorboard=false"]  # the same run
        assert reused_record(run["run_dir"], config, faster) is not None
    finally:
        record_file.write_text(json.dumps(record))


def test_records_copied_to_another_runs_folder_are_reused(bench, monkeypatch, tmp_path_factory):
    """A benchmark's records committed beside its results (another folder than the runs were trained in) are the
    same runs: the table regenerates from them without training, and each run's folder is where it now is."""
    summary, root, _ = bench
    copied = _records_only(root, "records", monkeypatch, tmp_path_factory)
    again = run_accuracy_benchmark("smoke", root / "from-records", copied, progress=False, rows=ROWS_RUN, reuse=True)
    assert again["table"] == summary["table"] and again["reused_runs"] == 6
    assert all(Path(r["run_dir"]).is_relative_to(copied) for r in again["runs"])


def test_reading_only_reads_records_and_never_trains_a_missing_run(bench, monkeypatch, tmp_path_factory, capsys):
    """``train=False`` (``--reuse-only``) regenerates the table from records; a run without one is an error
    naming its folder, and nothing is trained or created for it."""
    summary, root, _ = bench
    copied = _records_only(root, "records-only", monkeypatch, tmp_path_factory)
    again = run_accuracy_benchmark("smoke", root / "read-only", copied, progress=False, rows=ROWS_RUN, train=False)
    assert again["table"] == summary["table"] and again["reused_runs"] == 6
    with pytest.raises(FileNotFoundError, match=r"seed7: no record of a finished run of single seed 7"):
        run_accuracy_benchmark("smoke", root / "read-only", copied, progress=False, rows=ROWS_RUN, seeds=[7],
                               train=False)
    assert not list(copied.rglob("seed7"))

    from auxnas.cli import main

    code = main(["bench", "accuracy", "--preset", "smoke", "--rows", *ROWS_RUN[1:], "--seeds", "7", "--reuse-only",
                 "--runs", str(copied), "--out", str(root / "read-only"), "--quiet"])
    assert code == 2
    assert "--reuse-only" in capsys.readouterr().err


def test_jobs_train_the_units_in_parallel_processes_and_read_their_records(
    bench, monkeypatch, tmp_path_factory, capsys,
):
    """``jobs=2`` trains the smoke preset's (setting, seed) units in two spawned processes, then reads every run
    from its record: the same runs as one process trains (up to the thread count's rounding)."""
    summary, root, _ = bench
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))
    parallel = run_accuracy_benchmark("smoke", root / "out-jobs", root / "runs-jobs", rows=ROWS_RUN, jobs=2)
    shown = capsys.readouterr().out.split("\n# ")[0]  # the progress lines before the report
    units = len({(r["setting"], r["seed"]) for r in parallel["runs"]})
    assert shown.count(" units] ") == units and "reused" not in shown  # trained by the units, not reused
    assert len({(r["setting"], r["seed"]) for r in parallel["runs"]}) >= 2
    assert len(parallel["runs"]) == len(summary["runs"])
    assert parallel["reused_runs"] == 0  # trained by this call's processes, then read from their records
    serial = {(r["setting"], r["row"], r["seed"]): r["test_best"] for r in summary["runs"]}
    for run in parallel["runs"]:
        assert Path(run["run_dir"]).is_relative_to(root / "runs-jobs")
        assert run["test_best"] == pytest.approx(serial[run["setting"], run["row"], run["seed"]], rel=1e-3)
    with pytest.raises(ValueError, match="jobs: need at least 1"):
        run_accuracy_benchmark("smoke", root / "out-jobs", root / "runs-jobs", progress=False, jobs=0)


def _records_only(root: Path, folder: str, monkeypatch, tmp_path_factory) -> Path:
    """The smoke benchmark's records copied to ``root/folder`` (``_copy_records``), with the shared data cache and
    training forbidden: what is read from there must come from the records alone."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))
    monkeypatch.setattr(auxnas.compare.execute, "fit", _no_training)
    return _copy_records(root / "runs", root / folder)
