"""``auxnas compare``: end to end on a tiny folder dataset with missing primary labels and on the synthetic scenes;
its statistics against hand-computed values, reuse after an interruption, its refusals and its recommendation."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest
from test_data_folder import write_folder

from auxnas.cli import main
from auxnas.compare import records
from auxnas.compare.comparison import run_comparison
from auxnas.compare.execute import Progress, Unit, train_run, train_units
from auxnas.compare.identity_defaults import IDENTITY_DEFAULTS
from auxnas.compare.records import RECORD_FILE, mixed_runs_text, reused_record, run_identity
from auxnas.compare.report import recommendation, verdicts
from auxnas.compare.rows import CEILING, check_methods, comparison_rows, method_overrides
from auxnas.config import ConfigError, ExperimentConfig, load_config, replace
from auxnas.data import build_splits
from auxnas.engine.callbacks import Callback
from auxnas.methods import METHOD_NAMES
from auxnas.train import fit
from auxnas.weighting import COMPOSED_NAMES, WEIGHTING_NAMES

#: tiny synthetic runs: 16 training images in 2 batches of 8 (1 per half when bilevel), 4 validation images
TINY = ["data.num_train=20", "data.val_fraction=0.2", "data.num_test=8", "data.batch_size=8", "train.epochs=1",
        "data.image_size=32", "model.backbone=tiny_resnet", "train.device=cpu"]


def _t_interval(values, baseline):
    """The paired 95 % t interval computed by hand (t = 12.706 for 1 degree of freedom)."""
    diffs = [v - b for v, b in zip(values, baseline)]
    assert len(diffs) == 2
    mean = statistics.fmean(diffs)
    half = 12.706 * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)
    return mean, mean - half, mean + half


@pytest.fixture(scope="module")
def folder_comparison(tmp_path_factory):
    """``auxnas compare`` on a folder dataset whose primary (seg) lacks labels on 3 of 10 images, with controls."""
    tmp = tmp_path_factory.mktemp("compare-folder")
    root = write_folder(tmp / "data", splits={"train": 10, "test": 4}, missing={"seg": [0, 3, 6]})
    overrides = ["data.name=folder", f"data.root={root}", "data.val_fraction=0.2", "data.batch_size=4",
                 "tasks.primary=seg", "tasks.aux=[normal]", "tasks.loss_weights={seg: 1.0, normal: 1.0}",
                 "model.backbone=tiny_resnet", "train.epochs=1", "train.device=cpu"]
    code = main(["compare", "demo", *overrides, "--methods", "aux_head", "--seeds", "2", "--controls",
                 "--out", str(tmp / "out"), "--quiet"])
    return code, tmp / "out", overrides


def test_compare_on_a_folder_with_missing_primary_labels_end_to_end(folder_comparison, capsys):
    code, out, overrides = folder_comparison
    assert code == 0
    summary = json.loads((out / "compare.json").read_text())
    assert (out / "compare.md").read_text() == summary["markdown"]
    info = summary["info"]
    assert info["rows"] == ["single", "aux_head", "aux_head-random_aux"]
    splits = build_splits(load_config("demo", overrides).data, progress=False)
    assert info["train_labels"]["seg"] == splits.train_label_counts(["seg"])["seg"] < info["train_images"] == 8
    assert info["primary_partial"] and not info["ceiling"]
    assert len(summary["runs"]) == 6 and {r["seed"] for r in summary["runs"]} == {0, 1}
    assert len({r["network_updates"] for r in summary["runs"]}) == 1  # equal updates for every row
    for run in summary["runs"]:  # each run's record reproduces it
        assert load_config("demo", run["overrides"]).out_dir == run["run_dir"]
    assert next(r for r in summary["runs"] if r["row"] == "aux_head-random_aux")["random_targets"] == ["normal"]
    for row in info["rows"]:
        export = summary["costs"][row]["export"]
        assert export["exported"] and export["params_ratio"] == 1.0 and export["flops_ratio"] == 1.0
        training = summary["costs"][row]["training"]
        assert training["iteration_ms"] > 0 and training["time_per_update_s"] > 0
        assert (out / "exports" / row / "model.safetensors").is_file()
    assert set(summary["verdicts"]) == {"aux_head", "aux_head-random_aux"}
    assert summary["recommendation"].startswith("aux_head: ")
    assert "Recommendation: " in summary["recommendation"]
    assert "| aux_head-random_aux |" in summary["markdown"]


def test_compare_statistics_match_hand_computed_values(folder_comparison):
    _, out, _ = folder_comparison
    summary = json.loads((out / "compare.json").read_text())
    runs = sorted(summary["runs"], key=lambda r: r["seed"])
    miou = {row: [r["test_best"]["miou"] for r in runs if r["row"] == row] for row in summary["info"]["rows"]}
    cell = summary["table"]["aux_head"]["best"]["miou"]
    assert cell["mean"] == pytest.approx(statistics.fmean(miou["aux_head"]))
    assert cell["std"] == pytest.approx(statistics.stdev(miou["aux_head"]))
    mean, low, high = _t_interval(miou["aux_head"], miou["single"])
    assert (cell["vs_single"]["mean_diff"], cell["vs_single"]["low"], cell["vs_single"]["high"]) == pytest.approx(
        (mean, low, high), abs=1e-9)
    expected = "better" if low > 0 else "worse" if high < 0 else "no difference"
    assert cell["vs_single"]["outcome"] == summary["verdicts"]["aux_head"]["outcome"] == expected
    control = summary["table"]["aux_head"]["vs_control"]
    mean, low, high = _t_interval(miou["aux_head"], miou["aux_head-random_aux"])
    assert (control["mean_diff"], control["low"], control["high"]) == pytest.approx((mean, low, high), abs=1e-9)


@pytest.fixture(scope="module")
def synthetic_comparison(tmp_path_factory):
    """A synthetic comparison with half the primary labels held out, interrupted after two runs and continued."""
    tmp = tmp_path_factory.mktemp("compare-synthetic")
    calls = []

    class Interrupted(Exception):
        """The comparison stopped in its third run (Ctrl-C, a killed job)."""

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted
        return fit(*args, **kwargs)

    def counted(*args, **kwargs):
        calls.append(1)
        return fit(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUXNAS_CACHE", str(tmp / "cache"))
        with pytest.raises(Interrupted):
            run_comparison("demo", TINY, methods=["aux_nas"], seeds=2, holdout=0.5, out_dir=tmp / "out",
                           progress=False, trainer=interrupted)
        finished = [p.parent.name + "/" + p.parent.parent.name for p in (tmp / "out" / "runs").rglob("bench_run.json")]
        calls.clear()
        summary = run_comparison("demo", TINY, methods=["aux_nas"], seeds=2, holdout=0.5, out_dir=tmp / "out",
                                 reuse=True, progress=False, trainer=counted)
    return summary, finished, len(calls)


def test_an_interrupted_comparison_continues_with_reuse(synthetic_comparison):
    summary, finished, trained = synthetic_comparison
    assert sorted(finished) == ["seed0/single", "seed0/single-all_labels"]  # two runs finished before the interrupt
    assert summary["reused_runs"] == 2 and trained == len(summary["runs"]) - 2 == 4


def test_jobs_train_the_seeds_in_parallel_processes(synthetic_comparison, tmp_path, monkeypatch, capsys):
    """``--jobs 2``: each seed's rows train in their own spawned process, then every run is read from its record:
    the runs one process trains (up to the thread count's rounding), none counted as reused."""
    serial, _, _ = synthetic_comparison
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    code = main(["compare", "demo", *TINY, "--methods", "aux_nas", "--seeds", "2", "--holdout", "0.5",
                 "--out", str(tmp_path / "out"), "--jobs", "2"])
    assert code == 0
    shown = capsys.readouterr().out
    assert shown.count(" units] seed ") == 2 and "reused" not in shown.split("\n# ")[0]
    parallel = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert parallel["reused_runs"] == 0 and len(parallel["runs"]) == len(serial["runs"]) == 6
    expected = {(r["row"], r["seed"]): r["test_best"] for r in serial["runs"]}
    for run in parallel["runs"]:
        assert run["test_best"] == pytest.approx(expected[run["row"], run["seed"]], rel=1e-3)
    with pytest.raises(ValueError, match="jobs: need at least 1"):
        run_comparison("demo", TINY, methods=["aux_nas"], seeds=2, out_dir=tmp_path / "other", jobs=0)


def test_holdout_adds_the_ceiling_and_the_share_of_the_gap(synthetic_comparison):
    summary, _, _ = synthetic_comparison
    info, table = summary["info"], summary["table"]
    assert info["holdout"] == 0.5 and info["ceiling"] and info["rows"] == ["single", CEILING, "aux_nas"]
    assert info["train_labels"]["normal"] == 8 and info["train_labels"]["seg"] == 16  # half the primary labels
    floor = next(r for r in summary["runs"] if r["row"] == "single")
    top = next(r for r in summary["runs"] if r["row"] == CEILING)
    assert floor["train_labels"]["normal"] == 8 and top["train_labels"]["normal"] == 16
    assert "share" in table["aux_nas"] and "share" not in table[CEILING]
    assert summary["costs"]["aux_nas"]["export"]["exported"]  # a2p cut, verified single-task cost
    assert "Giving single-task the 50 % of primary labels held out (the ceiling)" in summary["recommendation"]


def test_fewer_than_two_seeds_and_unknown_methods_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="at least 2 distinct seeds"):
        run_comparison("demo", TINY, methods=["aux_head"], seeds=1, out_dir=tmp_path)
    with pytest.raises(SystemExit):
        main(["compare", "demo", "--seeds", "1"])
    assert "expected a number of seeds >= 2" in capsys.readouterr().err
    assert main(["compare", "demo", *TINY, "--methods", "aux_nass", "--seeds", "2", "--out", str(tmp_path)]) == 2
    assert "unknown method 'aux_nass'" in capsys.readouterr().err
    assert main(["compare", "demo", *TINY, "--methods", "aux_head+gradvac", "--out", str(tmp_path)]) == 2
    assert "unknown weighting 'gradvac'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything trained


def test_rows_of_methods_weightings_controls_and_ceiling():
    check_methods(["aux_head+auto_lambda+cagrad"], METHOD_NAMES, (*WEIGHTING_NAMES, *COMPOSED_NAMES))
    assert method_overrides("aux_head+auto_lambda+cagrad") == ("method.name=aux_head",
                                                               "weighting.name=auto_lambda+cagrad")
    rows = comparison_rows(["aux_nas", "aux_head+gcs"], ["normal", "depth"], controls=True,
                           ceiling=("data.labelled_fraction={}",))
    assert list(rows) == ["single", CEILING, "aux_nas", "aux_head+gcs", "aux_nas-random_aux",
                          "aux_head+gcs-random_aux"]
    assert rows["aux_head+gcs"] == ("method.name=aux_head", "weighting.name=gcs")
    assert rows["aux_nas-random_aux"][-1] == "data.random_targets=[normal, depth]"
    assert rows[CEILING] == ("method.name=single", "tasks.aux=[]", "data.labelled_fraction={}")


def _summary(diffs: dict[str, tuple[float, float, float]], control: tuple[float, float, float] | None = None):
    """A hand-made comparison summary: row -> (mean difference, low, high) of mIoU against single-task."""
    table = {"single": {"best": {"miou": {"mean": 40.0, "vs_single": None}}}}
    for row, (mean, low, high) in diffs.items():
        outcome = "better" if low > 0 else "worse" if high < 0 else "no difference"
        table[row] = {"best": {"miou": {"vs_single": {"mean_diff": mean, "low": low, "high": high,
                                                      "outcome": outcome}}}}
    if control is not None:
        table["aux_head"]["vs_control"] = dict(zip(("mean_diff", "low", "high"), control))
    info = {"main_metric": "miou", "higher_is_better": {"miou": True}, "seeds": [0, 1, 2], "network_updates": 96,
            "primary": "seg", "holdout": 0.9, "train_labels": {"seg": 10}}
    costs = {row: {"export": {"exported": True, "params_ratio": 1.0, "flops_ratio": 1.0}} for row in table}
    summary = {"info": info, "table": table, "costs": costs}
    summary["verdicts"] = verdicts(summary)
    return summary


def test_the_recommendation_follows_from_the_table():
    summary = _summary({"aux_head": (1.3, 0.7, 1.9), "aux_nas": (0.2, -0.5, 0.9),
                        "aux_head-random_aux": (0.1, -0.4, 0.6)}, control=(1.2, 0.5, 1.9))
    text = recommendation(summary)
    assert "aux_head: better than single-task (miou +1.3 [+0.7, +1.9])" in text
    assert "the gain comes from the auxiliary labels, not from the extra updates" in text
    assert "aux_nas: not distinguishable from single-task" in text
    assert text.endswith("Recommendation: aux_head, the largest gain beyond the seed spread; its exported primary "
                         "network costs exactly what single-task's does.")
    noise = recommendation(_summary({"aux_head": (1.3, 0.7, 1.9)}, control=(0.1, -0.5, 0.7)))
    assert "not distinguishable from its random-auxiliary control" in noise
    small = recommendation(_summary({"aux_head": (0.3, -4.3, 4.9), "aux_nas": (-0.2, -3.0, 2.6)}))
    assert "only differences larger than about ±2.8 miou could be told apart" in small
    assert "keep single-task" in small and "too small for any verdict" not in small
    blind = _summary({"aux_head": (0.3, -4.3, 4.9), CEILING: (0.5, -1.0, 2.0)})
    assert "too small for any verdict" in recommendation(blind)  # not even the ceiling differs from the floor
    decided = recommendation(_summary({"aux_head": (-1.0, -1.2, -0.8)}))
    assert "aux_head: worse than single-task" in decided and "could be told apart" not in decided


def test_a_run_trained_again_drops_its_earlier_record_before_training(tmp_path):
    """A run stopped while it trains again must not leave the record of its earlier training for ``--reuse``."""
    cfg = load_config("demo", [*TINY, f"out_dir={tmp_path / 'run'}"])
    record = tmp_path / "run" / RECORD_FILE
    record.parent.mkdir()
    # a record made before records had an identity, at the defaults of its time: the cadence of today's
    record.write_text(json.dumps({"command": "auxnas train demo", "overrides": [*TINY, "method.arch_every=2"],
                                  "test_best": {}, "run_dir": str(record.parent)}))

    class Interrupted(Exception):
        """The run stopped while it trained."""

    def interrupted(*args, **kwargs):
        assert not record.exists()
        raise Interrupted

    with pytest.raises(Interrupted):
        train_run("single", 0, cfg, TINY, "demo", splits=None, bilevel=False, reuse=False, trainer=interrupted)
    assert not record.exists()
    assert reused_record(record.parent, "demo", TINY) is None


def test_a_run_stopped_after_an_epoch_continues_from_it_with_reuse(tmp_path, monkeypatch):
    """With reuse, a run interrupted after its first epoch resumes from its last.pt (not from scratch) and ends
    where the unbroken run ends."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    overrides = [*TINY, "train.epochs=2"]
    unbroken_cfg = load_config("demo", [*overrides, f"out_dir={tmp_path / 'unbroken'}"])
    splits = build_splits(unbroken_cfg.data, progress=False)
    unbroken = train_run("single", 0, unbroken_cfg, overrides, "demo", splits, False, False)

    class Stopped(Exception):
        """The run was killed after its first epoch."""

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, run, record):
            if record.epoch == 1:
                raise Stopped

    resumes = []
    cfg = load_config("demo", [*overrides, f"out_dir={tmp_path / 'stopped'}"])
    with pytest.raises(Stopped):
        train_run("single", 0, cfg, overrides, "demo", splits, False, True,
                  trainer=lambda *a, **k: fit(*a, **k, callbacks=[StopAfterFirstEpoch()]))
    record = train_run("single", 0, cfg, overrides, "demo", splits, False, True,
                       trainer=lambda *a, **k: resumes.append(k.get("resume")) or fit(*a, **k))
    assert resumes == [True] and record["resumed_after_epoch"] == 1 and unbroken["resumed_after_epoch"] is None
    assert record["test_best"] == pytest.approx(unbroken["test_best"], rel=1e-6)
    assert record["test_last"] == pytest.approx(unbroken["test_last"], rel=1e-6)


def test_a_training_call_never_reuses_a_run_of_another_float_format(tmp_path, monkeypatch):
    """The same config computes in bfloat16 on CUDA (``train.amp``) and in float32 on CPU: a call that trains
    here trains such a run again instead of mixing the formats; reading only takes every record as it is."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo", [*TINY, f"out_dir={tmp_path / 'run'}"])
    splits = build_splits(cfg.data, progress=False)
    first = train_run("single", 0, cfg, TINY, "demo", splits, False, False)
    assert first["precision"] == "float32"
    assert train_run("single", 0, cfg, TINY, "demo", splits, False, True)["reused"]
    record_file = tmp_path / "run" / RECORD_FILE
    cuda = {**first, "precision": "bfloat16", "identity": run_identity(cfg, splits.record(), "bfloat16")}
    record_file.write_text(json.dumps(cuda))  # as a CUDA machine with amp writes it
    assert train_run("single", 0, cfg, TINY, "demo", splits, False, False, train=False)["precision"] == "bfloat16"
    trained = []
    again = train_run("single", 0, cfg, TINY, "demo", splits, False, True,
                      trainer=lambda *a, **k: trained.append(1) or fit(*a, **k))
    assert trained == [1] and not again.get("reused") and again["precision"] == "float32"
    assert again["test_best"] == first["test_best"]
    # on CPU train.amp changes nothing: the same run, in the same format
    fp32 = [*TINY, "train.amp=false"]
    fp32_cfg = load_config("demo", [*fp32, f"out_dir={tmp_path / 'run'}"])
    assert train_run("single", 0, fp32_cfg, fp32, "demo", splits, False, True,
                     trainer=lambda *a, **k: trained.append(1) or fit(*a, **k))["reused"] and trained == [1]


def test_a_report_says_when_runs_differ_in_keys_outside_their_identity():
    """Runs reused across a switch of the layout (or of logging, or amp) are the same runs, but the report says
    how many were trained otherwise, and whether the float formats are mixed."""
    wanted = ["train.lr=0.1", "train.channels_last=true"]
    runs = [{"overrides": ["train.lr=0.1"], "precision": "float32"}, {"overrides": wanted}]
    assert mixed_runs_text(wanted, runs[1:]) == ""
    assert mixed_runs_text(wanted, runs) == (
        " Runs trained with other values of keys outside a run's identity (speed, logging) than these overrides "
        "give, each record keeping its own: `train.channels_last` unset in 1.")
    gpu = {"overrides": [*wanted, "train.amp=true"], "precision": "bfloat16"}
    text = mixed_runs_text(wanted, [*runs, gpu])
    assert text.endswith("`train.channels_last` unset in 1, `train.amp` true in 1. Float formats: bfloat16 in 1 "
                         "runs, float32 in 2 runs.")


def test_progress_estimates_the_time_left_from_the_trained_ones_run_in_parallel():
    """The time left is the mean time of those trained so far (a reused one took none), times those left, over
    the number running at once; the count names what it counts."""
    shown: list[str] = []
    progress = Progress(5, shown.append, counted=" units", parallel=2)
    progress.finished("a", 240.0)  # 4 left, 2 at a time: 4 x 240 s / 2
    progress.finished("b", None)  # reused: the mean stays 240 s; 3 left, 2 at a time: 360 s
    progress.finished("c", 60.0)  # mean 150 s; 2 left: 150 s
    progress.finished("d", 60.0)  # mean 120 s; 1 left runs alone: 120 s
    progress.finished("e", 60.0)
    assert shown == ["[1/5 units] a; about 8 min left", "[2/5 units] b; about 6 min left",
                     "[3/5 units] c; about 2 min left", "[4/5 units] d; about 2 min left", "[5/5 units] e"]


def test_a_failing_unit_is_shown_at_once_and_starts_no_further_unit(tmp_path):
    """The first unit fails (its config does not exist): the failure is shown as it happens, the units after it
    never start (each would fail and be shown as well), and the call raises it."""
    shown: list[str] = []
    units = [Unit(str(tmp_path / f"missing{k}.yaml"), (), {"single": ()}, ("single",), 0,
                  tmp_path / "runs", f"unit {k}") for k in range(3)]
    with pytest.raises(ConfigError, match="missing0.yaml"):
        train_units(units, 1, reuse=False, show=shown.append)
    assert len(shown) == 1 and shown[0].startswith("unit 0: failed (") and "no further unit starts" in shown[0]
    assert not (tmp_path / "runs").exists()


def test_identities_are_relative_to_frozen_defaults(monkeypatch):
    """Every schema field has its frozen default; a default changed later puts the field into the identity of runs
    at the new default (a record made at the old one is then another run, never silently reused)."""
    assert set(records.flat_config(dataclasses.asdict(ExperimentConfig()))) <= set(IDENTITY_DEFAULTS)
    cfg = load_config("demo", ["method.name=aux_nas"])  # the default cadence: 2 since issue 32, 1 when identities began
    assert records.identity_fields(cfg)["method.arch_every"] == cfg.method.arch_every == 2
    assert "method.arch_every" not in records.identity_fields(replace(cfg, method={"arch_every": 1}))
    monkeypatch.setattr(records, "IDENTITY_DEFAULTS", {**IDENTITY_DEFAULTS, "method.window": 5})
    assert records.identity_fields(cfg)["method.window"] == cfg.method.window == 3


def test_a_record_without_identity_is_read_at_the_defaults_of_its_time(tmp_path):
    """A record written before records had an identity was trained at the frozen defaults: a run at a default
    changed since (``method.arch_every``, 1 then, 2 now) is another run, even from the same config and overrides."""
    run_dir = tmp_path / "runs" / "setting" / "aux_nas" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / RECORD_FILE).write_text(json.dumps({"command": "auxnas train demo ...", "run_dir": str(run_dir),
                                                   "overrides": ["method.name=aux_nas"]}))
    assert reused_record(run_dir, "demo", ["method.name=aux_nas"]) is None
    assert reused_record(run_dir, "demo", ["method.name=aux_nas", "method.arch_every=1"]) is not None
