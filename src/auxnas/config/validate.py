"""A config checked against the components it names, in one place above them.

``auxnas.config`` reads and type-checks a config on its own (it imports nothing else of auxnas but its schema and
checks); each component checks its own section here: the tasks their names and losses (those a dataset declares
among them), the dataset reader the tasks it provides, the backbones the model and image size, the weighting method
its options (with the tasks' likelihoods). ``fit`` validates every config it trains.
"""

from __future__ import annotations

from .. import backbones, tasks, weighting
from ..data import readers
from . import ConfigError, ExperimentConfig


def validate(cfg: ExperimentConfig, source: str = "config") -> ExperimentConfig:
    """``cfg`` once every component accepts its section; else a one-line ``ConfigError`` naming ``source`` and
    the key. The dataset's own task declarations (``readers.declared_kinds``) are read first: the tasks' and the
    weighting's checks take them."""
    try:
        kinds = readers.declared_kinds(cfg)
        tasks.check_config(cfg, kinds)
        readers.check_config(cfg)
        backbones.check_config(cfg)
        weighting.check_config(cfg, tasks.likelihoods(cfg.tasks.all, kinds))
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg
