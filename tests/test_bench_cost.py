"""The cost benchmark's tiny preset: files, structure, and the exact parameter/FLOP equalities (never timings)."""

from __future__ import annotations

import json
import math

import pytest

from auxnas.bench.cost import run_cost_benchmark
from auxnas.bench.cost_settings import ARCH_EVERY, EXPORTED_METHODS, GRADIENT_METHODS, TARGETS
from auxnas.measure import time_interleaved, time_ratio


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, run_cost_benchmark("tiny", out, device="cpu", progress=False)


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_writes_the_json_it_returns_and_a_markdown_table(result):
    out, returned = result
    assert json.loads((out / "cost-cpu.json").read_text()) == returned
    markdown = (out / "cost-cpu.md").read_text()
    assert markdown.startswith("# Cost benchmark: cpu, preset `tiny`")
    assert "| network | params |" in markdown and "| K |" in markdown
    assert returned["device"]["kind"] == "cpu" and returned["preset"] == "tiny"
    assert set(returned["targets"]) == set(TARGETS)
    assert returned["all_met"] == all(row["met"] for row in returned["checks"])


def test_exported_networks_cost_exactly_the_single_task_network(result):
    networks = result[1]["backbones"]["tiny_resnet"]["inference"]["networks"]
    for method in EXPORTED_METHODS:
        entry = networks[method]
        assert entry["params"] == networks["single"]["params"] and entry["params_ratio"] == 1.0
        assert entry["flops_per_image"] == networks["single"]["flops_per_image"] and entry["flops_ratio"] == 1.0
        assert entry["checks"]["params_ratio"]["met"] and entry["checks"]["flops_ratio"]["met"]
        assert positive(entry["latency_ms"]["median"]) and positive(entry["latency_ratio"]["value"])
    # the train-time Aux-NAS model runs every branch: what the export saves
    assert networks["aux_nas_train_time"]["flops_ratio"] > 1.5 and networks["aux_nas_train_time"]["params_ratio"] > 1.5


def met(check: dict) -> bool:
    """``check``'s rule applied to its value: what ``met`` must say."""
    value, bound = check["value"], check["target"]
    return {"==": value == bound, "<=": value <= bound, "|.|<=": abs(value) <= bound}[check["rule"]]


def test_training_step_ratios_follow_from_the_steps(result):
    bench = result[1]["backbones"]["tiny_resnet"]
    steps = bench["training"]["steps"]
    flops = {name: steps[name]["flops"] for name in steps}
    ms = {name: steps[name]["ms"]["median"] for name in steps}
    singles = flops["single_normal"] + flops["single_seg"]
    arch, net = flops["aux_nas_k1_architecture"], flops["aux_nas_k1_network"]
    # the Aux-NAS network step runs both branches and the fusion ops (zero-initialised, still computed): a little
    # more than the two single-task steps; the architecture step computes no weight gradients: less than it
    assert singles < net < 1.1 * singles and arch < net
    ratios = bench["training"]["ratios"]
    assert ratios["network_step"]["flops"] == pytest.approx(net / singles, rel=1e-12)
    assert ratios["network_step"]["time"]["value"] == pytest.approx(
        ms["aux_nas_k1_network"] / (ms["single_normal"] + ms["single_seg"]))
    assert ratios["architecture_to_network"]["flops"] == pytest.approx(arch / net, rel=1e-12)
    assert set(ratios["search_iteration"]) == {f"arch_every={k}" for k in ARCH_EVERY}
    for k in ARCH_EVERY:
        assert ratios["search_iteration"][f"arch_every={k}"]["flops"] == pytest.approx((arch / k + net) / singles,
                                                                                     rel=1e-12)
    for entry in (ratios["network_step"], ratios["architecture_to_network"], *ratios["search_iteration"].values()):
        assert entry["check"]["value"] == entry["time"]["value"] and entry["check"]["met"] == met(entry["check"])
    memory = bench["memory"]
    assert all(positive(v) for v in memory["peak_mib"].values())
    assert memory["ratio"]["value"] == pytest.approx(
        memory["peak_mib"]["aux_nas_k1"] / (memory["peak_mib"]["single_normal"] + memory["peak_mib"]["single_seg"]))
    assert all(row["met"] == met(row) for row in result[1]["checks"])


def test_k_scaling_has_every_k_with_its_linear_prediction(result):
    by_k = result[1]["backbones"]["tiny_resnet"]["k_scaling"]["by_k"]
    assert set(by_k) == {"0", "1", "2", "3"}
    assert [len(by_k[k]["aux_tasks"]) for k in ("1", "2", "3")] == [1, 2, 3]
    assert by_k["0"]["params"] < by_k["1"]["params"] < by_k["2"]["params"] < by_k["3"]["params"]
    for k in ("2", "3"):
        assert set(by_k[k]["checks"]) == {"network_step_ms", "params", "peak_memory_mib"}
        assert by_k[k]["relative_error"]["params"] == pytest.approx(by_k[k]["params"] / by_k[k]["predicted"]["params"]
                                                                    - 1)
        assert by_k[k]["predicted"]["params"] == by_k["1"]["params"] + (int(k) - 1) * (by_k["1"]["params"]
                                                                                       - by_k["0"]["params"])
        # one branch per auxiliary task, linked only to the primary: parameters and FLOPs linear in K (the heads of
        # depth and scene differ from seg's a little)
        assert abs(by_k[k]["relative_error"]["params"]) < 0.01
        assert abs(by_k[k]["relative_error"]["network_step_flops"]) < 0.05


def test_weighting_overhead_of_every_gradient_method(result):
    overhead = result[1]["backbones"]["tiny_resnet"]["weighting_overhead"]
    assert overhead["aux_tasks"] == ["seg"]  # every gradient method accepts a single auxiliary task
    for model in ("aux_head", "aux_nas"):
        assert overhead[model]["equal"]["overhead"]["value"] == 1.0
        for method in GRADIENT_METHODS:
            assert positive(overhead[model][method]["overhead"]["value"])
            # gradient surgery back-propagates each task separately through the shared part; GradNorm adds the
            # gradient norms at the last shared layer only
            low, high = (1.3, 2.0) if method != "gradnorm" else (1.0, 1.2)
            assert low < overhead[model][method]["flops_ratio"] < high, (model, method)
        # Auto-Lambda's meta step: two forward-backward passes (the virtual step, the primary's gradient ahead) and
        # two forwards (the finite difference) before the network step's forward-backward
        assert 3.0 < overhead[model]["auto_lambda"]["flops_ratio"] < 4.5
        # AuxiLearn's (timed at every step; by default one every 50): double backward for each Neumann term
        assert 7.0 < overhead[model]["auxilearn"]["flops_ratio"] < 12.0
    assert overhead["peak_memory_ratio"]["auto_lambda"] > 0 and overhead["peak_memory_ratio"]["auxilearn"] > 0
    for model in ("aux_head", "aux_nas"):  # at the default cadence: Auto-Lambda every step, AuxiLearn every 50
        amortised, timed = overhead["amortised_overhead"][model], overhead[model]
        assert amortised["auto_lambda"] == {"every": 1, "value": timed["auto_lambda"]["overhead"]["value"]}
        assert amortised["auxilearn"]["every"] == 50
        assert amortised["auxilearn"]["value"] == pytest.approx(1 + (timed["auxilearn"]["overhead"]["value"] - 1) / 50)


def test_time_interleaved_alternates_calls_and_pairs_rounds():
    order = []
    samples = time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3, warmup=1)
    assert order == ["b", "a", "a", "b", "b", "a", "a", "b"]  # the starting call rotates every round
    assert [len(s) for s in samples.values()] == [3, 3]
    ratio = time_ratio({"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, 2.0]}, {"a": 1.0}, {"b": 1.0})
    assert ratio["value"] == 1.0 and ratio["rounds_q25"] == 0.75 and ratio["rounds_q75"] == 1.25


def test_rejects_an_unknown_preset_or_device(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        run_cost_benchmark("huge", tmp_path, progress=False)
    with pytest.raises(ValueError, match="device"):
        run_cost_benchmark("tiny", tmp_path, device="meta", progress=False)
