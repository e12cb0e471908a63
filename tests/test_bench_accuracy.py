"""The accuracy benchmark's smoke preset: its outputs, its statistics, its noise control and its equal budgets."""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

import auxnas.compare.runs
import auxnas.engine.state
from auxnas.bench.accuracy import run_accuracy_benchmark
from auxnas.bench.presets import (
    AUX_SINGLE,
    CEILING,
    CONTROLS,
    INVESTIGATION_ROWS,
    PRESETS,
    ROWS,
    SETTINGS,
    UNTABLED,
    setting_config,
)
from auxnas.compare.runs import last_overrides
from auxnas.config import PACKAGED_CONFIGS, expand_overrides, load_config, protocol_overrides
from auxnas.data import RandomTargets, build_splits
from auxnas.stats import mean_std, paired_interval, ratio_interval

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


def test_rows_and_settings_are_declared_once_and_selected_by_name(tmp_path):
    labels = [label for label, _ in ROWS]
    assert len(labels) == len(set(labels)) == 26 and labels[:2] == ["single", CEILING]
    assert set(PRESETS["full"].rows) == set(labels) - UNTABLED
    assert UNTABLED >= {label for label, _ in INVESTIGATION_ROWS} | {AUX_SINGLE, "aux_nas-recipe-a2p_wd"}
    assert labels.index("aux_nas-recipe-a2p_wd") > labels.index(AUX_SINGLE)  # after the runs it starts from
    names = [name for name, _ in SETTINGS]
    assert len(set(names)) == 10 and tuple(names[:2]) == CONTROLS  # the controls are reported first
    packaged = sorted(p.stem for p in (PACKAGED_CONFIGS / "bench").glob("*.yaml"))
    assert packaged == sorted(names)  # every setting is a config (auxnas compare bench/<setting>), and only they
    for name in names:
        cfg = load_config(setting_config(name))
        assert cfg.model.backbone == "tiny_resnet" and cfg.data.image_size == 32 and cfg.data.batch_size == 16
        assert len(cfg.tasks.aux) == 1 and cfg.tasks.loss_weights[cfg.tasks.primary] == 1.0
    assert PRESETS["controls"].settings == CONTROLS and set(CONTROLS) <= set(PRESETS["quick"].settings)
    with pytest.raises(ValueError, match="unknown rows"):
        run_accuracy_benchmark("smoke", tmp_path, tmp_path, progress=False, rows=["nope"])
    with pytest.raises(ValueError, match="unknown preset"):
        run_accuracy_benchmark("huge", tmp_path, tmp_path, progress=False)


def test_the_default_row_undoes_the_protocol_presets_overrides():
    """``aux_nas-default`` after the protocol preset's overrides is today's default Aux-NAS on each of its settings
    (loss weights of tasks a setting does not train apart: they are unused)."""
    reset = dict(ROWS)["aux_nas-default"]
    assert {o.split("=")[0] for o in protocol_overrides("paper_cnn")} <= {o.split("=")[0] for o in reset}
    preset = PRESETS["protocol"]
    for name in preset.settings:
        default = load_config(setting_config(name), ["method.name=aux_nas"])
        undone = load_config(setting_config(name), [*expand_overrides(preset.overrides), *reset])
        trained = {t: undone.tasks.loss_weights[t] for t in undone.tasks.all}
        assert trained == default.tasks.loss_weights
        assert dataclasses.replace(undone, tasks=default.tasks) == default
        protocol = load_config(setting_config(name), [*expand_overrides(preset.overrides), "method.name=aux_nas"])
        assert protocol.train.optimizer == "sgd" and protocol.method.fusion_lr_factor == 100


def test_last_overrides_keep_the_config():
    overrides = ["train.epochs=16", "tasks.aux=[normal]", "train.epochs=1", "tasks.aux=[]", "method.name=single",
                 "seed=3"]
    assert last_overrides(overrides) == ["train.epochs=1", "tasks.aux=[]", "method.name=single", "seed=3"]
    assert load_config("demo", overrides) == load_config("demo", last_overrides(overrides))


def test_reuse_reads_finished_runs_and_trains_only_changed_ones(bench, monkeypatch, tmp_path_factory):
    summary, root, _ = bench
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))

    monkeypatch.setattr(auxnas.compare.runs, "fit", _no_training)
    again = run_accuracy_benchmark("smoke", root / "again", root / "runs", progress=False, rows=ROWS_RUN, reuse=True)
    assert again["table"] == summary["table"]
    assert again["reused_runs"] == len(again["runs"]) == 6
    assert again["run_time_s"] == pytest.approx(sum(r["wall_time_s"] for r in summary["runs"]))
    assert "6 of 6 runs reused" in again["markdown"]
    with pytest.raises(AssertionError, match="trained again"):  # another seed is a run not made yet
        run_accuracy_benchmark("smoke", root / "again", root / "runs", progress=False, rows=ROWS_RUN, seeds=[7],
                               reuse=True)


def test_a_tagged_variant_applies_its_overrides_to_every_run(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    summary = run_accuracy_benchmark("smoke", tmp_path / "out", tmp_path / "runs", progress=False, rows=["aux_nas"],
                                     seeds=[0], overrides=["method.arch_lr=0.05"], tag="arch-lr")
    assert (tmp_path / "out" / "accuracy-smoke-arch-lr.json").is_file()
    assert "variant `arch-lr`: method.arch_lr=0.05" in summary["markdown"]
    for run in summary["runs"]:
        assert load_config("demo", run["overrides"]).method.arch_lr == 0.05
        assert run["run_dir"].startswith(str(tmp_path / "runs" / "smoke-arch-lr"))
    with pytest.raises(ValueError, match="needs a tag"):
        run_accuracy_benchmark("smoke", tmp_path, tmp_path, progress=False, overrides=["train.lr=0.1"])
    with pytest.raises(ValueError, match="tag: letters"):
        run_accuracy_benchmark("smoke", tmp_path, tmp_path, progress=False, overrides=["train.lr=0.1"], tag="a/b")


def test_a_tag_made_with_other_overrides_is_refused(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    kwargs = {"progress": False, "rows": [], "seeds": [0], "tag": "v"}
    run_accuracy_benchmark("smoke", out, runs, overrides=["train.lr=0.003"], **kwargs)
    assert json.loads((runs / "smoke-v" / "variant.json").read_text())["overrides"] == ["train.lr=0.003"]
    message = r"^tag 'v': .*/variant\.json was made with overrides \['train\.lr=0\.003'\], not \['train\.lr=0\.1'\]"
    with pytest.raises(ValueError, match=message):
        run_accuracy_benchmark("smoke", out, runs, overrides=["train.lr=0.1"], **kwargs)
    with pytest.raises(ValueError, match=r"accuracy-smoke-v\.json was made with overrides"):  # its result file too
        run_accuracy_benchmark("smoke", out, tmp_path / "other-runs", overrides=["train.lr=0.1"], **kwargs)
    again = run_accuracy_benchmark("smoke", out, runs, overrides=["train.lr=0.003"], reuse=True, **kwargs)
    assert again["reused_runs"] == 1  # the same overrides: the same variant, continued
    # keys outside a run's identity (speed, logging) may change: the same variant, its runs reused
    faster = ["train.lr=0.003", "train.channels_last=true", "train.tensorboard=false"]
    again = run_accuracy_benchmark("smoke", out, runs, overrides=faster, reuse=True, **kwargs)
    assert again["reused_runs"] == 1 and again["overrides"] == faster
    assert ("Runs trained with other values of keys outside a run's identity (speed, logging) than these overrides "
            "give, each record keeping its own: `train.channels_last` unset in 1, `train.tensorboard` unset in 1."
            ) in again["markdown"]
    assert json.loads((runs / "smoke-v" / "variant.json").read_text())["overrides"] == faster


def test_a_tiny_control_reports_floor_ceiling_share_and_verdict(tmp_path):
    summary = run_accuracy_benchmark("smoke", tmp_path / "out", tmp_path / "runs", progress=False,
                                     settings=list(CONTROLS), rows=["aux_head"], seeds=[0, 1],
                                     overrides=["train.lr=0.003"], tag="ctrl")
    assert [r["label"] for r in summary["rows"]] == ["single", CEILING, "aux_head"]
    controls = summary["controls"]
    assert set(controls["settings"]) == set(CONTROLS)
    for name, primary, aux in (("ctrl-depth", "depth", "disparity"), ("ctrl-layout", "seg", "layout")):
        info, table, verdict = summary["settings"][name], summary["table"][name], controls["settings"][name]
        assert (info["primary"], info["aux"], info["ceiling"]) == (primary, aux, True)
        runs = {row: sorted((r for r in summary["runs"] if r["setting"] == name and r["row"] == row),
                            key=lambda r: r["seed"]) for row in ("single", CEILING, "aux_head")}
        for row, row_runs in runs.items():
            assert [r["seed"] for r in row_runs] == [0, 1]
            for run in row_runs:  # the variant's overrides reach every row, the ceiling's included
                cfg = load_config(f"bench/{name}", run["overrides"])
                assert cfg.train.lr == 0.003
                assert cfg.data.labelled_fraction == ({} if row == CEILING else {primary: 0.1})
                assert (run["train_labels"][primary] == info["train_images"]) == (row == CEILING)
        main, higher = info["main_metric"], primary == "seg"
        value = {row: [r["test_best"][main] for r in row_runs] for row, row_runs in runs.items()}
        sign = 1 if higher else -1
        closed = [sign * (v - f) for v, f in zip(value["aux_head"], value["single"])]
        gaps = [sign * (c - f) for c, f in zip(value[CEILING], value["single"])]
        share = table["aux_head"]["share"]["best"]
        assert share["share"] == pytest.approx((closed[0] + closed[1]) / (gaps[0] + gaps[1]))
        assert share["gap"] == pytest.approx((gaps[0] + gaps[1]) / 2)
        interval = ratio_interval(closed, gaps)
        assert (share["low"], share["high"], share["bounded"]) == (interval["low"], interval["high"],
                                                                   interval["bounded"])
        assert verdict["shares"]["aux_head"] == share
        assert verdict["floor"] == dict(zip(("mean", "std"), mean_std(value["single"])))
        assert verdict["ceiling"] == dict(zip(("mean", "std"), mean_std(value[CEILING])))
        assert verdict["passed"] == (share["bounded"] and share["gap"] > 0 and share["low"] > 0)
    assert controls["passed"] == all(c["passed"] for c in controls["settings"].values())
    markdown = summary["markdown"]
    assert markdown.index("## Can this benchmark see a gain?") < markdown.index("## What was measured")
    for name, verdict in controls["settings"].items():
        result = "**PASSED**" if verdict["passed"] else "**NOT PASSED**"
        assert f"| {name} | " in markdown and result in markdown
    sentence = "**The positive controls passed**" if controls["passed"] else "**The positive controls did not pass**"
    assert sentence in markdown
    assert "share of gap selected" in markdown


def test_the_recipe_rows_start_from_the_seeds_single_task_runs(tmp_path, capsys):
    """aux_nas-recipe starts its primary branch from the seed's single run and its auxiliary branch from a
    single-task run on the auxiliary task (run for it, in no table); it is compared with single-task continued
    from its own run, its fair baseline."""
    summary = run_accuracy_benchmark("smoke", tmp_path / "out", tmp_path / "runs", progress=True,
                                     rows=["single-continued", "aux_nas-recipe"])
    # each run's progress line shows its own primary's main metric: the auxiliary's single-task run, normal's
    assert f"a-small {AUX_SINGLE} seed 0: normal/mean_angle " in capsys.readouterr().out
    by_row = {(r["row"], r["seed"]): r for r in summary["runs"]}
    for seed in (0, 1):
        single, aux = by_row[("single", seed)]["run_dir"], by_row[(AUX_SINGLE, seed)]["run_dir"]
        assert "tasks.primary=normal" in by_row[(AUX_SINGLE, seed)]["overrides"]
        assert f"init.primary={single}" in by_row[("single-continued", seed)]["overrides"]
        recipe = by_row[("aux_nas-recipe", seed)]["overrides"]
        assert f"init.primary={single}" in recipe and f"init.aux={{normal: {aux}}}" in recipe
    table = summary["table"]["a-small"]
    assert AUX_SINGLE not in table
    vs = table["aux_nas-recipe"]["vs_baseline"]
    expected = paired_interval(*[[by_row[(row, s)]["test_best"]["miou"] for s in (0, 1)]
                                 for row in ("aux_nas-recipe", "single-continued")])
    assert vs["row"] == "single-continued" and vs["mean_diff"] == pytest.approx(expected["mean_diff"])
    assert "against its fair baseline single-continued" in summary["markdown"]
    # the records alone, moved to another folder, give the same table: the runs they start from moved with them
    copied = _copy_records(tmp_path / "runs", tmp_path / "records")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auxnas.compare.runs, "fit", _no_training)
        again = run_accuracy_benchmark("smoke", tmp_path / "again", copied, progress=False,
                                       rows=["single-continued", "aux_nas-recipe"], reuse=True)
    assert again["table"] == summary["table"] and again["reused_runs"] == len(summary["runs"])
    # a seed stopped before its recipe run, continued from the records alone: the runs the recipe starts from have
    # records but no checkpoint, so they train again, and so does single-continued, recorded from the old single
    next(copied.rglob("aux_nas-recipe/seed0/bench_run.json")).unlink()
    kept = _copy_records(copied, tmp_path / "kept")
    resumed = run_accuracy_benchmark("smoke", tmp_path / "resumed", copied, progress=False,
                                     rows=["single-continued", "aux_nas-recipe"], reuse=True)
    trained = {(r["row"], r["seed"]) for r in resumed["runs"] if not r.get("reused")}
    assert trained == {("single", 0), (AUX_SINGLE, 0), ("single-continued", 0), ("aux_nas-recipe", 0)}
    assert resumed["reused_runs"] == len(summary["runs"]) - 4
    # asked for the recipe alone, that would leave single-continued's record naming weights it did not start from
    with pytest.raises(ValueError, match=r"seed 0: .*single.* must train again .* the recorded runs of "
                                         r"single-continued started from them"):
        run_accuracy_benchmark("smoke", tmp_path / "alone", kept, progress=False, rows=["aux_nas-recipe"],
                               reuse=True)
    assert not list(kept.rglob("*.pt"))  # refused before anything trained


def test_a_run_recorded_from_other_overrides_of_the_same_config_is_reused(bench, monkeypatch, tmp_path_factory):
    """Reuse matches the resolved config, not the override list: a record made from the demo config with the
    setting's overrides (as the benchmark wrote them before its settings became configs) is the same run."""
    summary, root, _ = bench
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))
    run = next(r for r in summary["runs"] if r["row"] == "single" and r["seed"] == 0)
    config = "bench/a-small"
    assert auxnas.compare.runs.reused_record(run["run_dir"], config, run["overrides"]) is not None
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
        assert auxnas.compare.runs.reused_record(run["run_dir"], config, run["overrides"]) is not None
        other = [*run["overrides"], "train.lr=0.003"]  # another run: not reused
        assert auxnas.compare.runs.reused_record(run["run_dir"], config, other) is None
        faster = [*run["overrides"], "train.channels_last=true", "train.tensorboard=false"]  # the same run
        assert auxnas.compare.runs.reused_record(run["run_dir"], config, faster) is not None
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
    monkeypatch.setattr(auxnas.compare.runs, "fit", _no_training)
    return _copy_records(root / "runs", root / folder)


def _copy_records(runs: Path, to: Path) -> Path:
    """Only the records of the runs in ``runs`` (no checkpoint), in the same layout under ``to``."""
    for record in runs.rglob("bench_run.json"):
        target = to / record.parent.relative_to(runs)
        target.mkdir(parents=True)
        shutil.copy(record, target)
    return to


def _no_training(*args, **kwargs):
    raise AssertionError("a recorded run was trained again")
