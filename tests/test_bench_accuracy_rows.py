"""The accuracy benchmark's rows and settings: declared once and selected by name, the default row, tagged variants,
the positive controls' floor, ceiling, share and verdict, and the recipe rows that start from earlier runs."""

from __future__ import annotations

import dataclasses
import json

import pytest
from bench_accuracy_helpers import _copy_records, _no_training

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
from auxnas.compare.records import last_overrides
from auxnas.config import PACKAGED_CONFIGS, expand_overrides, load_config, protocol_overrides
from auxnas.stats import mean_std, paired_interval, ratio_interval


def test_rows_and_settings_are_declared_once_and_selected_by_name(tmp_path):
    labels = [label for label, _ in ROWS]
    assert len(labels) == len(set(labels)) == 30 and labels[:2] == ["single", CEILING]
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
    again = run_accuracy_benchmark("smoke", tmp_path / "again", copied, progress=False,
                                   rows=["single-continued", "aux_nas-recipe"], reuse=True, trainer=_no_training)
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
