"""The common start of the parity checks with the meta-learned weightings' references (``parity_auto_lambda.py``,
``parity_auxilearn.py``): a tiny run of auxnas's engine after a few network steps, and two of its batches."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from auxnas.config import load_config
from auxnas.distributed import Distributed
from auxnas.engine.fit import build_run
from auxnas.engine.loaders import epoch_batches
from auxnas.engine.parallel import Batch
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


def warmed_up(overrides: list[str], steps: int) -> tuple[Run, Batch, Batch]:
    """The run of ``demo`` with ``overrides`` (seed 0, CPU) after ``steps`` network steps of its first epoch (so that
    the optimiser holds momentum or moments), and the next two network batches (the compared update's network batch
    and meta batch)."""
    torch.manual_seed(0)
    cfg = load_config("demo", overrides)
    run = build_run(cfg, Distributed(), torch.device("cpu"), progress=False)
    run.model.train()
    batches = [run.state.parallel.batch(net, run.model.tasks)
               for net, _ in epoch_batches(run.splits.train, cfg, 1, run.state.bilevel, run.dist, run.held_out)]
    for batch in batches[:steps]:
        network_step(run.state, batch, 0.0)
        run.state.schedule.step()
    return run, batches[steps], batches[steps + 1]
