"""Collectives per training step of data-parallel training, counted on 2 gloo processes (CPU).

The setting is ``tests/test_distributed_equivalence.py``'s: Aux-NAS (bilevel search) on tiny_resnet, 32 px
synthetic data, global batch 8 (4 images per process), 2 epochs of 2 network steps and 2 architecture steps each.
For every weighting method named, two processes train with ``auxnas.train.fit``; each counts, during every network
step and every architecture step:

* ``python``: calls of ``torch.distributed.all_reduce`` (wrapped), by the function that made them:
  ``_AllReduceSum.forward`` / ``.backward`` (the global-batch BatchNorm, 2 per layer and forward, 2 more in the
  backward), ``_all_reduce_`` (auxnas's bucketed hand reduce: gradients, per-task gradients, losses, counts);
  with the elements they carried;
* ``ddp``: the gradient buckets ``DistributedDataParallel`` all-reduces during the backward (a communication hook
  that counts, then does the default all-reduce), with their elements; zero where the step does not run through
  it. Not counted: DDP's own all-reduce of which parameters a step used (``find_unused_parameters``, one small
  all-reduce per step, made in C++).

``DataParallel.batch``'s all-reduce of the label counts (one per batch, outside the steps) is not counted either.

    PYTHONPATH=src python benchmarks/allreduce_counts.py --label after --source "this commit"
    git archive a776fbc src | tar -x -C /tmp/auxnas-before   # main before DistributedDataParallel
    PYTHONPATH=/tmp/auxnas-before/src python benchmarks/allreduce_counts.py --label before --source "main a776fbc"

writes (updates) ``benchmarks/results/allreduce_counts.json`` under ``--label``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

SETTING = [
    "data.image_size=32", "data.num_train=40", "data.num_test=8", "data.val_fraction=0.2", "data.batch_size=8",
    "data.augment=false", "train.epochs=2", "train.optimizer=sgd", "train.lr=0.01", "train.tensorboard=false",
    "method.name=aux_nas", "tasks.primary=normal", "tasks.aux=[seg]",
]
OUT = Path(__file__).parent / "results" / "allreduce_counts.json"


def worker(out: str, overrides: list[str]) -> None:
    """One training process: fit with the counting wrappers; writes its per-step counts to ``out``."""
    import torch
    import torch.distributed as tdist

    import auxnas.engine.fit as fit_module
    from auxnas.config import load_config

    current: dict | None = None  # the counts of the step running now

    real_all_reduce = tdist.all_reduce

    def all_reduce(tensor, *args, **kwargs):
        caller = sys._getframe(1).f_code
        if current is not None and caller.co_name != "_allreduce_fut":  # DDP's bucket hook: counted by the hook
            current["python"][getattr(caller, "co_qualname", caller.co_name)] += 1
            current["python_elements"] += tensor.numel()
        return real_all_reduce(tensor, *args, **kwargs)

    tdist.all_reduce = all_reduce

    def bucket_hook(state, bucket):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        if current is not None:
            current["ddp_buckets"] += 1
            current["ddp_elements"] += bucket.buffer().numel()
        return allreduce_hook(state, bucket)

    steps: list[dict] = []
    wrapper: dict = {}

    def counted(kind, step):
        def run(state, *args, **kwargs):
            nonlocal current
            ddp = state.parallel.wrapper
            if ddp is not None and not wrapper:
                ddp.register_comm_hook(None, bucket_hook)
            wrapper.setdefault("type", type(ddp).__name__ if ddp is not None else None)
            wrapper.setdefault("network_weights", sum(p.numel() for p in state.model.network_parameters()))
            wrapper.setdefault("shared_weights", sum(p.numel() for p in state.model.shared_parameters()))
            current = {"step": kind, "python": Counter(), "python_elements": 0, "ddp_buckets": 0, "ddp_elements": 0}
            try:
                return step(state, *args, **kwargs)
            finally:
                current["python"] = dict(current["python"])
                steps.append(current)
                current = None
        return run

    fit_module.network_step = counted("network", fit_module.network_step)
    fit_module.architecture_step = counted("architecture", fit_module.architecture_step)
    fit_module.fit(load_config("demo", overrides), progress=False)
    Path(out).write_text(json.dumps({"network_step_wrapper": wrapper.get("type"),
                                     "network_weights": wrapper.get("network_weights"),
                                     "shared_weights": wrapper.get("shared_weights"), "steps": steps}))
    del torch


def launch(weighting: str, tmp: Path) -> dict:
    """Both processes' counts for ``weighting`` (rank 0's, after checking that rank 1 counted the same)."""
    from auxnas.config import load_config
    from auxnas.data import build_splits

    overrides = [*SETTING, f"weighting.name={weighting}", f"out_dir={tmp / weighting}"]
    os.environ["AUXNAS_CACHE"] = str(tmp / "cache")
    build_splits(load_config("demo", overrides).data, progress=False)  # generated once, read by both processes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(tmp / f"{weighting}-{rank}.json"),
                                       *overrides], env=env))
    for proc in procs:
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"{weighting}: a training process failed ({proc.returncode})")
    ranks = [json.loads((tmp / f"{weighting}-{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0] == ranks[1], "the two processes made different collectives"
    return ranks[0]


def summary(counts: dict) -> dict:
    """Per kind of step: the counts of each step, and of the last one (DDP rebuilds its buckets after the first)."""
    out: dict = {"network_step_wrapper": counts["network_step_wrapper"], "network_weights": counts["network_weights"],
                 "shared_weights": counts.get("shared_weights")}
    for kind in ("network", "architecture"):
        steps = [{k: v for k, v in s.items() if k != "step"} for s in counts["steps"] if s["step"] == kind]
        for s in steps:
            s["python_total"] = sum(s["python"].values())
        out[kind] = {"steps": len(steps), "last": steps[-1] if steps else None, "each": steps}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="key of the results in the JSON file (e.g. before, after)")
    parser.add_argument("--weightings", nargs="+", default=["equal", "uncertainty", "pcgrad"])
    parser.add_argument("--source", default="", help="which auxnas code ran (recorded with the results)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import auxnas

    with tempfile.TemporaryDirectory() as tmp:
        results = {w: summary(launch(w, Path(tmp))) for w in args.weightings}
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["setting"] = SETTING
    data[args.label] = {"source": args.source, "auxnas": str(Path(auxnas.__file__).parent), "weightings": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    for w, r in results.items():
        net = r["network"]["last"]
        print(f"{args.label} {w}: network step ({r['network_step_wrapper']}): {net['python_total']} python "
              f"all-reduces {net['python']}, {net['ddp_buckets']} DDP buckets ({net['ddp_elements']} elements)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3:])
    else:
        main()
