"""Shared by the data-parallel tests (``test_distributed_*.py``): a job of processes started as ``torchrun`` starts
them (gloo on CPU, nothing beyond localhost), the training worker they run, the one-process reference and the
comparison of the two (why it can be tight: ``test_distributed_equivalence.py``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from auxnas.config import load_config
from auxnas.train import Callback, fit

BASE = [
    "data.image_size=32", "data.num_train=40", "data.num_test=8", "data.val_fraction=0.2", "data.batch_size=8",
    "data.augment=false", "train.epochs=2", "train.optimizer=sgd", "train.lr=0.01", "train.tensorboard=false",
    "method.name=aux_nas", "tasks.primary=normal", "tasks.aux=[seg]",
]

#: one training process: fit (or resume), then its final weights, architecture, result and the files it wrote
WORKER = textwrap.dedent('''
    import json, os, sys
    import torch
    import auxnas.engine.callbacks, auxnas.engine.fit, auxnas.engine.run_dir
    import auxnas.train as train
    from auxnas.config import load_config

    out, mode, *overrides = sys.argv[1:]
    rank = os.environ.get("RANK", "0")
    writes = []
    for module, name in ((auxnas.engine.callbacks, "save_checkpoint"), (auxnas.engine.fit, "write_json"),
                         (auxnas.engine.run_dir, "write_text")):  # every file a run writes
        def wrapped(path, *args, _real=getattr(module, name), **kwargs):
            writes.append(str(path))
            return _real(path, *args, **kwargs)
        setattr(module, name, wrapped)

    class Observe(train.Callback):
        """Stops at the INTERRUPT_AT_VALIDATION-th validation; saves the weights at the end of training."""

        validations = 0

        def on_validated(self, run, record):
            self.validations += 1
            if self.validations == int(os.environ.get("INTERRUPT_AT_VALIDATION", "0")):
                raise KeyboardInterrupt

        def on_train_end(self, run):
            model = run.model
            arch = {id(p) for p in model.architecture_parameters()}
            torch.save({"weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                        "architecture": {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in arch}},
                       f"{out}/weights-rank{rank}.pt")

    try:
        if mode == "resume":
            result = train.resume_run(overrides[0], progress=False, callbacks=[Observe()])
        else:
            result = train.fit(load_config("demo", overrides), progress=False, callbacks=[Observe()])
    except KeyboardInterrupt:
        sys.exit(130)
    with open(f"{out}/result-rank{rank}.json", "w") as f:
        json.dump({"history": [r.to_dict() for r in result.history], "test_best": result.test_best,
                   "test_last": result.test_last, "writes": writes}, f)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(command: list[str], world_size: int = 2, timeout: float = 240, extra_env: dict | None = None) -> None:
    """Run ``command`` as ``world_size`` processes of one data-parallel job (as torchrun would) and wait for all."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", **(extra_env or {})}
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rank, (proc, output) in enumerate(zip(procs, outputs)):
        expected = (0, 130) if extra_env and "INTERRUPT_AT_VALIDATION" in extra_env else (0,)
        assert proc.returncode in expected, f"rank {rank} exited with {proc.returncode}:\n{output[-3000:]}"


def run_workers(tmp_path: Path, mode: str, args: list[str], **kwargs) -> Path:
    out = tmp_path / "ddp"
    out.mkdir(exist_ok=True)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    launch([sys.executable, str(worker), str(out), mode, *args], **kwargs)
    return out


def run_single(monkeypatch, overrides: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """The one-process reference: its result and its weights at the end of training."""
    final = {}

    class Capture(Callback):
        def on_train_end(self, run):
            final.update({k: v.detach().clone() for k, v in run.model.state_dict().items()})

    result = fit(load_config("demo", overrides), progress=False, callbacks=[Capture()])
    return {"history": [r.to_dict() for r in result.history], "test_best": result.test_best,
            "test_last": result.test_last}, final


def compare(ddp_dir: Path, single: dict, single_weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """Assert that both processes ended bitwise equal and match the one-process run; return the differences."""
    ranks = [torch.load(ddp_dir / f"weights-rank{r}.pt", map_location="cpu") for r in range(2)]
    results = [json.loads((ddp_dir / f"result-rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["architecture"], "aux_nas has architecture weights"
    for name, value in ranks[0]["architecture"].items():  # the architecture is the same on every process
        assert torch.equal(value, ranks[1]["architecture"][name]), name
    for name, value in ranks[0]["weights"].items():  # and so is everything else
        assert torch.equal(value, ranks[1]["weights"][name]), name
    assert results[0]["history"] == results[1]["history"] and results[0]["test_best"] == results[1]["test_best"]
    # rank 0 alone writes
    assert results[1]["writes"] == [] and {Path(p).name for p in results[0]["writes"]} >= {
        "last.pt", "best.pt", "metrics.json"}

    weights = ranks[0]["weights"]
    assert weights.keys() == single_weights.keys()
    max_weight = max(float((weights[k].double() - single_weights[k].double()).abs().max())
                     for k in weights if weights[k].is_floating_point() and "running_" not in k)
    for name, value in weights.items():
        torch.testing.assert_close(value, single_weights[name], atol=1e-4, rtol=1e-4, msg=name)
    ddp = results[0]
    metric_diffs = []
    pairs = [(a["val"], b["val"]) for a, b in zip(ddp["history"], single["history"], strict=True)]
    for a, b in [*pairs, (ddp["test_last"], single["test_last"]), (ddp["test_best"], single["test_best"])]:
        for task, values in b.items():
            for metric, value in values.items():
                metric_diffs.append(abs(a[task][metric] - value))
                assert a[task][metric] == pytest.approx(value, abs=1e-3), (task, metric)
    for a, b in zip(ddp["history"], single["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_task_losses"] == pytest.approx(b["train_task_losses"], rel=1e-5)
    diffs = {"max_weight_diff": max_weight, "max_metric_diff": max(metric_diffs)}
    print(f"\ndata-parallel vs one process: {diffs}")
    return diffs
