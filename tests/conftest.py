"""Shared fixtures: tiny configs and an isolated dataset cache."""

from __future__ import annotations

import pytest

from auxnas.config import ExperimentConfig, config_from_dict


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test uses one session-wide temporary dataset cache, never the user's."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path_factory.getbasetemp() / "auxnas-cache"))


@pytest.fixture
def tiny_config(tmp_path) -> ExperimentConfig:
    """A config that trains in seconds on CPU."""
    return config_from_dict({
        "name": "tiny",
        "out_dir": str(tmp_path / "run"),
        "data": {"image_size": 32, "num_train": 64, "num_test": 32, "val_fraction": 0.25, "batch_size": 16},
        "tasks": {"primary": "normal", "aux": []},
        "model": {"backbone": "tiny_resnet"},
        "train": {"epochs": 2, "lr": 0.003},
    })
