"""The authors' recipe in one call: single-task primary, single-task auxiliaries, then the method initialised
from them (``init.*``), as the Aux-NAS paper trains every setting."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import ExperimentConfig, InitConfig, load_config
from .train import RunDirectoryError, fit


def recipe_stages(cfg: ExperimentConfig, out_dir: str | os.PathLike) -> list[tuple[str, ExperimentConfig]]:
    """(stage name, config) of every run of the recipe for ``cfg``, in order: ``single-<primary>``, one
    ``single-<aux>`` per auxiliary task (same data, model and training settings, that task as the only one),
    then ``cfg`` itself in ``<method name>`` with both initialisations set."""
    out = Path(out_dir)

    def single(task: str) -> tuple[str, ExperimentConfig]:
        """The single-task run on ``task``, with the labels of ``task`` the method's run sees."""
        stage = f"single-{task}"
        fractions = {t: f for t, f in cfg.data.labelled_fraction.items() if t == task}
        return stage, dataclasses.replace(
            cfg, name=f"{cfg.name}-{stage}", out_dir=str(out / stage),
            tasks=dataclasses.replace(cfg.tasks, primary=task, aux=[]),
            method=dataclasses.replace(cfg.method, name="single"), init=InitConfig(),
            weighting=dataclasses.replace(cfg.weighting, name="equal", options={}),
            data=dataclasses.replace(cfg.data, labelled_fraction=fractions, random_targets=[]),
        )

    stages = [single(cfg.tasks.primary), *(single(aux) for aux in cfg.tasks.aux)]
    init = InitConfig(primary=stages[0][1].out_dir, aux={aux: stage.out_dir for aux, (_, stage) in
                                                         zip(cfg.tasks.aux, stages[1:])})
    stages.append((cfg.method.name, dataclasses.replace(cfg, out_dir=str(out / cfg.method.name), init=init)))
    return stages


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``config`` as dotted key -> value (``train.lr``), the form of overrides."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(recorded: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: recorded A, now B`` for every key whose value differs between two configs, ``out_dir`` left out (a
    run that moved is the same run)."""
    old, now = _flat(recorded), _flat(new)
    return [f"{key}: recorded {old.get(key, '(unset)')}, now {now.get(key, '(unset)')}"
            for key in sorted(old.keys() | now.keys()) if key != "out_dir" and old.get(key) != now.get(key)]


def _finished_metrics(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The test metrics of the selected checkpoint of a finished run of ``cfg`` in ``cfg.out_dir``, or None when
    there is none. A run of another config there, finished or not, is refused: training the stage would replace
    it."""
    run = Path(cfg.out_dir)
    try:
        saved = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    changes = config_changes(saved, cfg.to_dict()) if isinstance(saved, dict) else []
    if changes:
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise RunDirectoryError(f"{run}: holds a run of another config ({shown}); choose another --out, "
                                "or remove that folder to train the stage again")
    try:
        return json.loads((run / "metrics.json").read_text())["test_best"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_recipe(
    config: str | os.PathLike, overrides: Sequence[str] = (), out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the recipe of ``config`` + ``overrides`` (see ``recipe_stages``) under ``out_dir`` (default: the
    config's ``out_dir``). A stage whose folder already holds a finished run of the same config is kept, so an
    interrupted recipe continues where it stopped; one holding a run of another config is refused
    (``RunDirectoryError``), never replaced. Returns stage -> its run directory and primary test metrics."""
    cfg = load_config(config, overrides)
    results: dict[str, Any] = {}
    for stage, stage_cfg in recipe_stages(cfg, out_dir if out_dir is not None else cfg.out_dir):
        metrics = _finished_metrics(stage_cfg)
        if metrics is not None:
            if progress:
                print(f"== {stage}: finished earlier in {stage_cfg.out_dir} ==", flush=True)
        else:
            if progress:
                print(f"== {stage}: training ({stage_cfg.method.name} on {stage_cfg.tasks.all}) ==", flush=True)
            metrics = fit(stage_cfg, progress=progress, overwrite=True).test_best
        results[stage] = {"run_dir": stage_cfg.out_dir, "test_best": metrics[stage_cfg.tasks.primary]}
    return results
