"""benchmarks/results_page.py's answer to issue 36 (docs/weighting.md's rule), on hand-made records."""

import importlib.util
from pathlib import Path

from auxnas.compare.table import cell

ROOT = Path(__file__).parents[1]
SETTINGS = {"ctrl-depth": ("depth", "abs_err", False), "ctrl-layout": ("seg", "miou", True),
            "a-large": ("seg", "miou", True), "b-large": ("normal", "mean_angle", False),
            "d-10": ("seg", "miou", True)}
NOISE = (0.01, -0.02, 0.015, -0.005, 0.0)


def _script():
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(gains: dict[str, dict[str, float]], noisy: tuple[str, str] | None = None) -> dict:
    """Runs of every setting: single at 10, each row of ``gains`` better by its gain there (in the metric's better
    direction), plus a little noise per seed (100 times more for the (row, setting) ``noisy``); tables with each
    row's interval against single-task."""
    runs, table, info = [], {}, {}
    for s, (primary, metric, higher) in SETTINGS.items():
        info[s] = {"main_metric": metric, "primary": primary}
        table[s] = {}
        values = {row: [10.0 + (gain[s] if higher else -gain[s]) + NOISE[(k + i) % 5] * (100 if noisy == (row, s)
                                                                                            else 1) for k in range(5)]
                  for i, (row, gain) in enumerate({"single": dict.fromkeys(SETTINGS, 0.0), **gains}.items())}
        for row, vals in values.items():
            runs += [{"setting": s, "row": row, "seed": k, "test_best": {metric: v}} for k, v in enumerate(vals)]
            table[s][row] = {"best": {metric: cell(vals, None if row == "single" else values["single"], higher)}}
    return {"settings": info, "table": table, "runs": runs}


def test_the_answer_names_the_rows_that_keep_hard_sharings_transfer_and_never_hurt():
    head = {"ctrl-depth": 1.0, "ctrl-layout": 1.0, "a-large": 0.0, "b-large": -1.0, "d-10": 1.0}
    summary = _summary({"aux_head": head, "aux_head+auto_lambda": {**head, "b-large": 0.0},
                        "aux_nas+auto_lambda": {**head, "ctrl-layout": 0.0, "b-large": 0.0},
                        "aux_head+auxilearn": head})
    lines = _script().meta_answer(summary)
    assert lines[-1] == (
        "**Yes: Aux-Head + Auto-λ** keeps hard sharing's transfer on the controls and `d-10` and is never worse than "
        "single-task on `a-large` and `b-large` (Aux-NAS + Auto-λ is worse than Aux-Head on `ctrl-layout`: "
        "-1.00 [-1.02, -0.98]; Aux-Head + AuxiLearn is worse than single-task on `b-large`: +1.00 [+0.97, +1.03]).")


def test_no_meta_learned_rows_no_answer():
    assert _script().meta_answer(_summary({"aux_head": dict.fromkeys(SETTINGS, 1.0)})) is None


def test_a_kept_row_that_cannot_be_told_from_a_harmful_aux_head_is_said_beside_the_answer():
    head = {"ctrl-depth": 1.0, "ctrl-layout": 1.0, "a-large": 0.0, "b-large": -1.0, "d-10": 1.0}
    lines = _script().meta_answer(_summary({"aux_head": head, "aux_head+auto_lambda": {**head, "b-large": -0.5}},
                                           noisy=("aux_head+auto_lambda", "b-large")))
    assert lines[-3].startswith("**Yes: Aux-Head + Auto-λ**")
    assert lines[-1].startswith("Beside the rule: Aux-Head is worse than single-task on `b-large` (+1.00 [+0.97, "
                                "+1.03]), and there Aux-Head + Auto-λ cannot be told from Aux-Head (Δ against "
                                "it -0.50 [")
    assert lines[-1].endswith("]): the records show no harm beyond noise for it, not that the harm is gone.")
    assert _script().meta_answer(_summary({"aux_head": head, "aux_head+auto_lambda": {**head, "b-large": 0.0}}))[-1] \
        .startswith("**Yes: Aux-Head + Auto-λ**")
