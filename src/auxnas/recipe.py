"""The authors' recipe in one call: single-task primary, single-task auxiliaries, then the method initialised
from them (``init.*``), as the Aux-NAS paper trains every setting."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .compare.records import config_changes
from .config import ExperimentConfig, InitConfig, load_config, replace
from .storage import check_output_folder, one_line
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
        return stage, replace(
            cfg, name=f"{cfg.name}-{stage}", out_dir=str(out / stage), tasks={"primary": task, "aux": []},
            method={"name": "single"}, init=InitConfig(), weighting={"name": "equal", "options": {}},
            data={"labelled_fraction": fractions, "random_targets": []},
        )

    stages = [single(cfg.tasks.primary), *(single(aux) for aux in cfg.tasks.aux)]
    init = InitConfig(primary=stages[0][1].out_dir, aux={aux: stage.out_dir for aux, (_, stage) in
                                                         zip(cfg.tasks.aux, stages[1:])})
    stages.append((cfg.method.name, replace(cfg, out_dir=str(out / cfg.method.name), init=init)))
    return stages


def _finished_metrics(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The test metrics of the selected checkpoint of a finished run of ``cfg`` in ``cfg.out_dir``, or None when
    there is none. A run of another config there, finished or not, is refused: training the stage would replace
    it."""
    run = Path(cfg.out_dir)

    def claim(folder: Path) -> str | None:
        try:
            saved = yaml.safe_load((folder / "config.yaml").read_text())
        except (OSError, ValueError, yaml.YAMLError):
            return None  # no run's config: training the stage there refuses what it must not replace
        changes = config_changes(saved, cfg.to_dict()) if isinstance(saved, dict) else []
        return f"a run of another config ({one_line(changes, 5, '; ')})" if changes else None

    check_output_folder(run, claim, "choose another --out, or remove that folder to train the stage again",
                        RunDirectoryError)
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
