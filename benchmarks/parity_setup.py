"""The common start of the parity checks with the meta-learned weightings' references (``parity_auto_lambda.py``,
``parity_auxilearn.py``): a tiny run of auxnas's engine after a few network steps, and two of its batches."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from auxnas.config import load_config
from auxnas.distributed import Distributed
from auxnas.engine.fit import build_run
from auxnas.engine.loaders import epoch_batches, labelled_tasks, share_batch
from auxnas.engine.run import Run
from auxnas.engine.steps import network_step


def reference_args(doc: str, holds: str) -> argparse.Namespace:
    """A parity script's ``--reference`` (the folder holding ``holds``, put first on ``sys.path`` so that the
    reference imports from it) and ``--out`` (its JSON result)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help=f"folder holding the reference's {holds}")
    parser.add_argument("--out", required=True, help="the JSON result")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.reference).resolve()))
    return args


def warmed_up(overrides: list[str], steps: int) -> tuple[Run, dict[str, Any], dict[str, Any], set[str], set[str]]:
    """The run of ``demo`` with ``overrides`` (seed 0, CPU) after ``steps`` network steps of its first epoch (so that
    the optimiser holds momentum or moments), the next two network batches (the compared update's network batch
    and meta batch) and the tasks labelled in each."""
    torch.manual_seed(0)
    cfg = load_config("demo", overrides)
    run = build_run(cfg, Distributed(), torch.device("cpu"), progress=False)
    run.model.train()
    batches = [net for net, _ in epoch_batches(run.splits.train, cfg, 1, run.state.bilevel, run.dist, run.held_out)]
    for net in batches[:steps]:
        share_batch(net, run.model.tasks, run.dist)
        network_step(run.state, net, 0.0)
        run.state.schedule.step()
    batch, meta = batches[steps], batches[steps + 1]
    labels = labelled_tasks(share_batch(batch, run.model.tasks, run.dist))
    return run, batch, meta, labels, labelled_tasks(share_batch(meta, run.model.tasks, run.dist))
