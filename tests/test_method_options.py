"""Each method's ``method.*`` options, declared with the method: it takes those and ignores every other one."""

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from auxnas.config import ExperimentConfig, config_from_dict
from auxnas.config.schema import MethodConfig
from auxnas.methods import METHOD_NAMES, METHOD_OPTIONS, ignored_options
from auxnas.methods.base import SEARCH_OPTIONS
from auxnas.storage import load_checkpoint
from auxnas.train import fit

#: a valid value other than the default for every option
OTHER_VALUE = {
    "granularity": "stage", "window": 2, "search": "p2a_only", "fusion_norm": "bn_relu", "fusion_init": 0.1,
    "p2a_init": 0.7, "a2p_init": 0.05, "optimization": "single_level", "arch_every": 3, "arch_optimizer": "sgd",
    "arch_lr": 0.05, "arch_weight_decay": 0.01, "arch_betas": [0.5, 0.999], "arch_schedule": "constant",
    "penalty_max": 10.0, "penalty_start": 0.0, "penalty_end": 0.1, "penalty_reduction": "sum",
    "a2p_weight_decay": 0.1, "fusion_lr_factor": 10.0, "module_weight": 0.5, "sparsity_weight": 0.5,
    "sharing_weight": 0.5, "temperature_start": 2.0, "temperature_end": 0.1, "curriculum": False,
    "curriculum_end": 0.2, "policy_init": 0.8, "adashare_sampling": "soft", "adashare_skip_downsample": True,
    "adashare_sparsity": "bounded",
}
OPTION_NAMES = [f.name for f in dataclasses.fields(MethodConfig) if f.name != "name"]


def tiny(method: dict, run_dir=".") -> ExperimentConfig:
    """A tiny run of ``method`` (two network steps) in ``run_dir``."""
    return config_from_dict({
        "name": "t", "out_dir": str(run_dir),
        "data": {"image_size": 32, "num_train": 64, "num_test": 8, "val_fraction": 0.125, "batch_size": 8},
        "tasks": {"primary": "normal", "aux": [] if method["name"] == "single" else ["seg"]},
        "model": {"backbone": "tiny_resnet"},
        "method": method, "train": {"epochs": 1, "lr": 0.003, "max_steps_per_epoch": 2},
    })


def trained_weights(run_dir, method: dict) -> dict[str, torch.Tensor]:
    """The weights after the tiny run of ``method`` in ``run_dir``."""
    fit(tiny(method, run_dir), progress=False)
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_every_option_is_some_methods_and_every_method_declares_its_own():
    assert set(METHOD_OPTIONS) == set(METHOD_NAMES)
    assert set().union(*METHOD_OPTIONS.values()) == set(OPTION_NAMES) == set(OTHER_VALUE)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_a_method_ignores_every_option_it_does_not_declare_and_the_run_says_so(tmp_path, name):
    foreign = {key: OTHER_VALUE[key] for key in OPTION_NAMES if key not in METHOD_OPTIONS[name]}
    said = {f"method.{key}": value for key, value in foreign.items()}
    assert ignored_options(tiny({"name": name, **foreign})) == said
    plain = trained_weights(tmp_path / "plain", {"name": name})
    changed = trained_weights(tmp_path / "changed", {"name": name, **foreign})
    assert plain.keys() == changed.keys()
    assert all(torch.equal(plain[key], changed[key]) for key in plain)


@pytest.mark.parametrize("name", [name for name in METHOD_NAMES if METHOD_OPTIONS[name]])
def test_the_options_a_method_declares_change_what_it_trains(tmp_path, name):
    own = {key: OTHER_VALUE[key] for key in METHOD_OPTIONS[name] if key != "a2p_weight_decay"}  # p2a_only: no a2p
    assert ignored_options(tiny({"name": name, **own})) == {}
    plain = trained_weights(tmp_path / "plain", {"name": name})
    changed = trained_weights(tmp_path / "changed", {"name": name, **own})
    shared = plain.keys() & changed.keys()
    assert plain.keys() != changed.keys() or any(not torch.equal(plain[key], changed[key]) for key in shared)


def test_the_methods_page_lists_each_methods_options():
    page = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    rows = {}
    for line in page.split("### Options per method", 1)[1].splitlines():
        if line.startswith("| `"):
            names, options = line.split("|")[1:3]
            rows.update(dict.fromkeys(re.findall(r"`(\w+)`", names), options))
    architecture = page.split("The architecture step's options", 1)[1].split("\n\n", 1)[0]
    expanded = {"Aux-G's": METHOD_OPTIONS["aux_g"], "the architecture step's": SEARCH_OPTIONS}
    assert set(rows) == set(METHOD_NAMES)
    for name, text in rows.items():
        listed = set(re.findall(r"`(\w+)`", text)).union(*(set(v) for k, v in expanded.items() if k in text))
        assert listed == set(METHOD_OPTIONS[name]), name
    assert re.findall(r"`(\w+)`", architecture) == list(SEARCH_OPTIONS)
