"""benchmarks/protocol_verdict.py on the committed records of the protocol experiment (reads JSON, trains nothing)."""

import copy
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]
RUNS = ROOT / "benchmarks" / "records" / "protocol-vgg16_narrow-64px-e30"


def _script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports why_no_transfer beside it
    spec = importlib.util.spec_from_file_location("protocol_verdict", ROOT / "benchmarks" / "protocol_verdict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vgg16_narrow_at_sgd_0p1_gives_no_verdict_and_names_its_stalled_primaries(monkeypatch):
    script = _script(monkeypatch)
    depth = script.setting_summary(RUNS, "ctrl-depth")
    stalled = {row: entry["stalled_seeds"] for row, entry in depth["rows"].items() if entry["stalled_seeds"]}
    assert stalled == {"single": [4], "aux_head": [3], "aux_nas": [2]}
    assert script.verdict(depth) == {"verdict": "no verdict",
                                     "why": "protocol Aux-Head does not pass the depth control"}
    passing = copy.deepcopy(depth)  # the follow-up's clause comes next: a stalled primary voids the verdict too
    passing["rows"]["aux_head"]["share"].update(low=0.1, bounded=True)
    assert script.verdict(passing)["why"] == "a primary stalled (row: seeds) {'single': [4], 'aux_head': [3], " \
                                             "'aux_nas': [2]}"


def test_vgg16_narrow_at_sgd_0p03_gives_no_verdict_without_a_stalled_run(monkeypatch):
    script = _script(monkeypatch)
    depth = script.setting_summary(RUNS.with_name("protocol-vgg16_narrow-lr0p03-64px-e30"), "ctrl-depth")
    assert not any(entry["stalled_seeds"] for entry in depth["rows"].values())
    assert depth["rows"]["aux_head"]["share"]["low"] < 0
    assert script.verdict(depth) == {"verdict": "no verdict",
                                     "why": "protocol Aux-Head does not pass the depth control"}
