"""What ``auxnas compare`` tells a team about its own folder data: the packaged ``folder`` template as written, the
warning on a small validation split, the deployed cost in words, the inference latency beside the training costs,
the figure, the report's title, what ``--quiet`` still shows, and the example that runs from an install."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import subprocess
import sys

import pytest
from PIL import Image
from test_data_folder import write_folder

import auxnas.compare.comparison
from auxnas.cli import main
from auxnas.compare.comparison import run_comparison
from auxnas.compare.report import deployed_cost, format_markdown, recommendation
from auxnas.plots import plot_comparison

#: the template's command as docs/compare.md writes it, at a tiny size
TEMPLATE = ["tasks.primary=seg", "tasks.aux=[normal]", "data.image_size=32", "train.epochs=1", "train.device=cpu"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def template_comparison(tmp_path_factory):
    """``auxnas compare folder data.root=... tasks.primary=seg "tasks.aux=[normal]" --quiet`` on 10 training images
    (the template's 20 % leaves 2 for validation): its printed lines, compare.json and the out folder."""
    tmp = tmp_path_factory.mktemp("compare-template")
    root = write_folder(tmp / "my_scenes", splits={"train": 10, "test": 4})
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["compare", "folder", f"data.root={root}", *TEMPLATE, "--seeds", "2", "--methods", "aux_head",
                     "--out", str(tmp / "out"), "--quiet"])
    assert code == 0
    return printed.getvalue(), json.loads((tmp / "out" / "compare.json").read_text()), tmp / "out"


def test_the_folder_template_compares_as_written_titled_after_its_data(template_comparison):
    _, summary, out = template_comparison
    info = summary["info"]
    assert info["config"] == "folder" and info["rows"] == ["single", "aux_head"] and len(summary["runs"]) == 4
    assert summary["markdown"].startswith("# my_scenes: will `normal` help `seg`?\n")
    assert (out / "compare.md").read_text() == summary["markdown"]


def test_quiet_prints_each_runs_validation_summary_the_warning_once_and_the_recommendation(template_comparison):
    printed, summary, _ = template_comparison
    assert len(re.findall(r"\] \w+ seed \d: seg/miou \S+ selected \(epoch 1/1\), \S+ last", printed)) == 4
    assert printed.count("warning: the validation split has 2 images, fewer than 20") == 1
    assert summary["recommendation"] in printed and "| Row |" not in printed  # compare.md is not printed


def test_a_small_validation_split_is_warned_and_recorded(template_comparison):
    _, summary, _ = template_comparison
    warning = summary["info"]["validation_warning"]
    assert warning.startswith("warning: the validation split has 2 images, fewer than 20")
    assert "data.val_fraction (now 0.2; the 10 training images are too few to carve 20)" in warning
    assert "val/ folder" in warning and f"**{warning}**" in summary["markdown"]


class Stop(Exception):
    """Raised where training would start: the warning comes before it."""


@pytest.mark.parametrize(("val_fraction", "warned"), [(0.6, True), (0.7, False)])
def test_the_warning_appears_under_20_validation_images_only(tmp_path, monkeypatch, capsys, val_fraction, warned):
    root = write_folder(tmp_path / "data", splits={"train": 30, "test": 4})  # 18 or 21 validation images

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(auxnas.compare.comparison, "train_rows", stop)
    with pytest.raises(Stop):
        run_comparison("folder", [f"data.root={root}", *TEMPLATE, f"data.val_fraction={val_fraction}"],
                       methods=["aux_head"], seeds=2, out_dir=tmp_path / "out", progress=False, run_lines=True)
    printed = capsys.readouterr().out
    if warned:
        assert "validation split has 18 images" in printed
        assert "data.val_fraction (now 0.6; data.val_fraction=0.67 carves 20 of the 30 training images)" in printed
    else:
        assert "warning" not in printed


def test_the_recommendation_states_the_deployed_cost(template_comparison):
    _, summary, _ = template_comparison
    export = summary["costs"]["single"]["export"]
    assert f"The exported network of every row costs exactly what single-task costs: {export['params']:,} " \
           f"parameters, {export['flops']:,} FLOPs per image." in summary["recommendation"]
    assert "Measured side by side, single-task's exported network infers in" in summary["recommendation"]


def test_the_deployed_cost_names_rows_that_do_not_cost_single_task():
    single = {"exported": True, "params": 1000, "flops": 50000, "params_ratio": 1.0, "flops_ratio": 1.0,
              "kept_norm_cells": 0, "kept_norm_ops": 0, "skipped_cells": 0}
    costs = {"single": {"export": single, "inference": None},
             "aux_head": {"export": single, "inference": None},
             "aux_nas": {"export": {**single, "params": 1064, "params_ratio": 1.064, "kept_norm_cells": 2,
                                    "kept_norm_ops": 4096}, "inference": None},
             "adashare": {"export": {**single, "params": 800, "flops": 40000, "params_ratio": 0.8,
                                     "flops_ratio": 0.8, "skipped_cells": 1}, "inference": None},
             "aux_g": {"export": {"exported": False, "reason": "a2p links above the threshold"}, "inference": None}}
    text = deployed_cost({"costs": costs})
    assert text.startswith("The exported networks of aux_head cost exactly what single-task costs: 1,000 "
                           "parameters, 50,000 FLOPs per image.")
    assert "aux_nas's exported network keeps a BatchNorm + ReLU after 2 fused cells (method.fusion_norm=bn_relu), " \
           "4,096 elementwise operations per image more: 1,064 parameters (× 1.064 single-task's)" in text
    assert "adashare's exported network skips 1 of single-task's cells (AdaShare): 800 parameters" in text
    assert "aux_g could not be exported (a2p links above the threshold)" in text


def test_the_latency_of_the_exported_networks_stands_beside_the_training_costs(template_comparison):
    _, summary, _ = template_comparison
    header, *rows = [line for line in summary["markdown"].splitlines() if line.startswith("| ")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    inference = columns.index("Inference (exported): ms / image (× single)")
    assert columns[inference + 1] == "Training (per update): ms"
    for line in rows:
        cell = [c.strip() for c in line.strip("|").split("|")][inference]
        ms, ratio = map(float, re.fullmatch(r"(\S+) \(× (\S+)\)", cell).groups())
        assert math.isfinite(ms) and ms > 0 and math.isfinite(ratio) and ratio > 0
    assert "| single |" in rows[0] and "(× 1.00)" in rows[0]  # single-task against itself
    assert summary["costs"]["aux_head"]["inference"]["vs_single"]["value"] > 0
    assert "Inference (exported): median of 20 eval forwards of one 32x32 test image" in summary["markdown"]


def test_the_figure_is_written_and_linked(template_comparison):
    _, summary, out = template_comparison
    figure = out / "compare.png"
    assert summary["figure_file"] == str(figure) and figure.read_bytes().startswith(PNG)
    with Image.open(figure) as image:
        image.verify()
    assert "](compare.png)" in summary["markdown"]


def test_the_figure_shows_the_share_of_the_gap_with_a_ceiling(tmp_path):
    def interval(mean, low, high):
        return {"mean_diff": mean, "low": low, "high": high}

    table = {"single": {}, "single-all_labels": {"best": {"abs_err": {"vs_single": interval(-0.2, -0.3, -0.1)}}},
             "aux_head": {"best": {"abs_err": {"vs_single": interval(-0.1, -0.15, -0.05)}},
                          "share": {"best": {"share": 0.5, "low": 0.3, "high": 0.7, "bounded": True}}},
             "aux_nas": {"best": {"abs_err": {"vs_single": interval(0.0, -0.1, 0.1)}},
                         "share": {"best": {"share": 0.0, "low": -math.inf, "high": math.inf, "bounded": False}}}}
    info = {"main_metric": "abs_err", "higher_is_better": {"abs_err": False}, "data": "scenes", "aux": ["disparity"],
            "primary": "depth"}
    without = {"single": {}, "aux_head": {"best": table["aux_head"]["best"]}}  # no ceiling: no share
    one = plot_comparison({"info": info, "table": without}, tmp_path / "one.png")
    two = plot_comparison({"info": info, "table": table}, tmp_path / "two.png")
    with Image.open(one) as small, Image.open(two) as wide:
        assert wide.width > small.width  # a second panel: the share of the gap


def test_a_users_own_figure_is_never_replaced(tmp_path, capsys):
    (tmp_path / "compare.png").write_bytes(PNG)
    assert main(["compare", "folder", f"data.root={tmp_path}", *TEMPLATE, "--out", str(tmp_path)]) == 2
    assert f"{tmp_path / 'compare.png'}: exists and was not written by auxnas compare" in capsys.readouterr().err


def test_the_folder_example_runs_from_the_installed_package():
    done = subprocess.run([sys.executable, "-m", "auxnas.examples.synthetic_folder", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m auxnas.examples.synthetic_folder")


def test_a_stalled_run_is_named_under_the_table_and_in_the_recommendation(template_comparison):
    _, summary, _ = template_comparison
    assert "Stalled" not in summary["markdown"]  # runs of one epoch: no judgement
    stalled = copy.deepcopy(summary)
    stalled["table"]["aux_head"]["stalled_seeds"] = [1]
    assert "before trusting any of this, train again at a lower train.lr" in recommendation(stalled)
    assert "\n**Stalled runs**: the primary stopped learning in aux_head seed 1 (" in format_markdown(stalled)
