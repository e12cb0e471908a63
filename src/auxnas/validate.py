"""A config checked against the components it names, in one place above them.

``auxnas.config`` reads and type-checks a config on its own (it imports nothing else of auxnas but its schema and
checks); each component checks its own section here: the tasks their names and losses, the dataset reader the
tasks it provides, the backbones the model and image size, the weighting method its options. ``fit`` validates
every config it trains.
"""

from __future__ import annotations

from . import backbones, tasks, weighting
from .config import ConfigError, ExperimentConfig
from .data import readers

#: every component's check, in the order their errors are reported
SECTION_CHECKS = (tasks.check_config, readers.check_config, backbones.check_config, weighting.check_config)


def validate(cfg: ExperimentConfig, source: str = "config") -> ExperimentConfig:
    """``cfg`` once every component accepts its section; else a one-line ``ConfigError`` naming ``source`` and
    the key."""
    try:
        for check in SECTION_CHECKS:
            check(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg
