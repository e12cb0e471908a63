"""Data-parallel training (torchrun): two processes train like one process on the same global batch.

The two processes use the gloo backend on CPU and are started as ``torchrun`` starts them (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT``; nothing beyond localhost);
each loads half of every global batch of ``data.batch_size`` images. The reference is one process (this one)
with the same config.

Why the comparison can be tight:

* BatchNorm: with several processes auxnas computes every BatchNorm's batch statistics over the global batch
  (``auxnas.distributed.global_batch_norm``, differentiable through its all-reduces; ``nn.SyncBatchNorm`` refuses
  CPU tensors), so the two-process run is the one-process run up to float round-off. Per-process statistics (what
  plain DDP does) would make the runs differ by design.
* ``data.augment=false``: augmentation would draw different random numbers in the two setups.
* SGD for the network: Adam divides every gradient element by its own running magnitude, so the round-off of an
  element whose gradient is nearly zero becomes a step of about +-lr (with Adam we saw single elements of 4608 move
  by 1e-3 while all others agreed to 1e-5); with SGD round-off stays round-off. (Aux-NAS's architecture weights
  keep their Adam optimiser.)
* tiny_resnet at 32 px with 4 images per process: at much smaller per-process batches (2 images) BatchNorm over
  a handful of 1x1 maps is ill-conditioned and two one-process runs that differ only in their thread count already
  drift apart by 1e-4 after a few steps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from auxnas.config import ConfigError, load_config
from auxnas.data import build_splits
from auxnas.distributed import COLLECTIVE_TIMEOUT, Distributed, collective_timeout
from auxnas.engine.fit import with_global_batch
from auxnas.engine.loaders import epoch_batches, steps_per_epoch
from auxnas.engine.state import set_rank_rng_state
from auxnas.tasks import build_task
from auxnas.train import Callback, fit
from auxnas.weighting import WEIGHTINGS

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
        json.dump({"history": result.history, "test_best": result.test_best, "test_last": result.test_last,
                   "writes": writes}, f)
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
    return {"history": result.history, "test_best": result.test_best, "test_last": result.test_last}, final


def compare(ddp_dir: Path, single: dict, single_weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """Assert that both processes ended bitwise equal and match the one-process run; return the differences."""
    ranks = [torch.load(ddp_dir / f"weights-rank{r}.pt") for r in range(2)]
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


@pytest.mark.parametrize("setting", [
    ["weighting.name=equal", "train.channels_last=true"],  # DistributedDataParallel's buckets of NHWC weights
    # a gradient method (per-task gradients averaged before the surgery) with scarce segmentation labels, so that
    # in some steps one process holds segmentation labels and the other none
    ["weighting.name=gcs", "data.labelled_fraction={seg: 0.25}"],
    # a loss weighting (through DistributedDataParallel) with steps where the segmentation head is unused on every
    # process (no label in the global batch) or on one (a zero loss there); the fusion projections in a
    # learning-rate group of their own
    ["weighting.name=equal", "data.labelled_fraction={seg: 0.25}", "method.fusion_lr_factor=2"],
], ids=["equal-channels-last", "gcs-partial-labels", "equal-partial-labels"])
def test_two_processes_train_like_one_on_the_same_global_batch(tmp_path, monkeypatch, setting):
    cache = tmp_path / "cache"
    monkeypatch.setenv("AUXNAS_CACHE", str(cache))
    overrides = [*BASE, *setting]
    build_splits(load_config("demo", overrides).data, progress=False)  # generated once, read by every process
    if "data.labelled_fraction={seg: 0.25}" in setting:  # the case the label shares exist for does occur
        cfg = load_config("demo", overrides)
        train = build_splits(cfg.data, progress=False).train
        seg = [[b["labelled"]["seg"].any().item() for b, _ in epoch_batches(train, cfg, epoch, True,
                                                                             Distributed(rank, 2))]
               for epoch in (1, 2) for rank in range(2)]
        assert any(a != b for ranks in zip(seg[0::2], seg[1::2]) for a, b in zip(*ranks))
    ddp = run_workers(tmp_path, "fit", [*overrides, f"out_dir={tmp_path / 'ddp-run'}"])
    assert "config.yaml" in {Path(p).name for p in json.loads((ddp / "result-rank0.json").read_text())["writes"]}
    single, weights = run_single(monkeypatch, [*overrides, f"out_dir={tmp_path / 'single-run'}"])
    diffs = compare(ddp, single, weights)
    # measured 9.2e-7 in the default layout, 2.4e-6 in NHWC (docs/distributed.md)
    assert diffs["max_weight_diff"] < (5e-6 if "train.channels_last=true" in setting else 2e-6)


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["pcgrad_aux", "uncertainty"])  # hand reduce; DistributedDataParallel
def test_an_interrupted_data_parallel_run_resumes(tmp_path, monkeypatch, weighting):
    """Both processes stop after epoch 2's training (before its checkpoint); ``resume_run`` in two processes, each
    loading the same last.pt, ends where one uninterrupted process does."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    overrides = [*BASE, "train.epochs=3", f"weighting.name={weighting}"]
    build_splits(load_config("demo", overrides).data, progress=False)
    run = tmp_path / "ddp-run"
    run_workers(tmp_path, "fit", [*overrides, f"out_dir={run}"], extra_env={"INTERRUPT_AT_VALIDATION": "2"})
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    ddp = run_workers(tmp_path, "resume", [str(run)])
    single, weights = run_single(monkeypatch, [*overrides, f"out_dir={tmp_path / 'single-run'}"])
    assert compare(ddp, single, weights)["max_weight_diff"] < 5e-6  # measured 2.5e-6 (docs/distributed.md)


def test_weightings_say_whether_they_need_task_gradients():
    """Loss weightings run the data-parallel network step through DistributedDataParallel; the methods that need
    each task's gradient (gradient surgery, GradNorm's norms) average those by hand."""
    linear = {name for name, cls in WEIGHTINGS.items() if not cls.needs_task_gradients}
    assert linear == {"equal", "uncertainty", "dwa"}


def test_loss_weightings_step_through_ddp_and_gradient_methods_reduce_once(tmp_path):
    """benchmarks/allreduce_counts.py on 2 processes: with ``equal`` every network step's gradients are all-reduced
    by DistributedDataParallel's buckets (all the network's weights) and auxnas reduces no gradient by hand (its one
    bucketed all-reduce is the step's losses); the architecture step does not go through the wrapper. With ``pcgrad``
    there is no wrapper and no bucket: the per-task gradients and the step's gradients are reduced by hand, once."""
    out = tmp_path / "counts.json"
    script = Path(__file__).parents[1] / "benchmarks" / "allreduce_counts.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), "--weightings", "equal", "pcgrad", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    counts = json.loads(out.read_text())["after"]["weightings"]
    equal, pcgrad = counts["equal"], counts["pcgrad"]
    assert equal["network_step_wrapper"] == "DistributedDataParallel" and equal["network"]["steps"] == 4
    for step in equal["network"]["each"]:  # every network weight, once (the architecture weights are not in it)
        assert step["ddp_buckets"] >= 1 and step["ddp_elements"] == equal["network_weights"]
        assert step["python"]["_all_reduce_"] == 1  # the losses' mean; no gradient reduced by hand
    assert pcgrad["network_step_wrapper"] is None
    for step in [*pcgrad["network"]["each"], *equal["architecture"]["each"], *pcgrad["architecture"]["each"]]:
        assert step["ddp_buckets"] == 0
    for step in pcgrad["network"]["each"]:  # per-task gradients (the has-gradient flags, the gradients), losses
        assert step["python"]["_all_reduce_"] == 4


#: fit in which the second network step's global batch has no label anywhere (every process's share is empty)
EMPTY_STEP_WORKER = textwrap.dedent('''
    import os, sys
    import torch
    import auxnas.engine.fit as fit_module
    from auxnas.config import load_config

    out, *overrides = sys.argv[1:]
    real, calls = fit_module.network_step, []

    def network_step(state, batch, *args, **kwargs):
        calls.append(state)
        if len(calls) != 2:
            return real(state, batch, *args, **kwargs)
        batch["share"] = {}  # as share_batch leaves it when no process holds a label
        before = [p.detach().clone() for p in state.model.parameters()]
        assert real(state, batch, *args, **kwargs) == ({}, {})
        assert all(torch.equal(a, p) for a, p in zip(before, state.model.parameters()))
        return {}, {}

    fit_module.network_step = network_step
    fit_module.fit(load_config("demo", overrides), progress=False)
    assert type(calls[0].ddp).__name__ == "DistributedDataParallel" and len(calls) == 4
    torch.save(calls[0].model.state_dict(), f"{out}/weights-rank{os.environ['RANK']}.pt")
''')


def test_a_global_batch_without_labels_makes_no_step_through_ddp(tmp_path, monkeypatch):
    """A network step whose global batch has no label makes no update on any process, after a forward through
    DistributedDataParallel without a backward; the next steps still reduce (the processes end equal)."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    overrides = [*BASE, "weighting.name=equal", f"out_dir={tmp_path / 'run'}"]
    build_splits(load_config("demo", overrides).data, progress=False)
    worker = tmp_path / "empty_step_worker.py"
    worker.write_text(EMPTY_STEP_WORKER)
    launch([sys.executable, str(worker), str(tmp_path), *overrides])
    ranks = [torch.load(tmp_path / f"weights-rank{rank}.pt") for rank in range(2)]
    assert all(torch.equal(value, ranks[1][name]) for name, value in ranks[0].items())


def test_torchrun_runs_the_command_line(tmp_path):
    """``torchrun --nproc_per_node 2 -m auxnas train ...``: one report (rank 0's), one complete run directory."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUXNAS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         "-m", "auxnas", "train", "demo", *BASE, "train.epochs=1", "data.augment=true", f"out_dir={run}", "--quiet"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports
    assert {"config.yaml", "best.pt", "last.pt", "metrics.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][0]["val"]["normal"]["num_images"] == 8  # the whole validation split, pooled once


def test_the_global_batch_must_split_evenly(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    cfg = load_config("demo", [*BASE, f"out_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="data.batch_size: 8 .* not divisible by the 3 processes"):
        fit(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_per_device_batch_sets_the_global_batch(tmp_path, monkeypatch):
    """``data.batch_size_per_device``: the global batch is it times the processes, whatever ``data.batch_size``
    (20, the ViT paper configs' global batch, on 8 processes: 3 per process, 24 in all)."""
    cfg = load_config("demo", [*BASE, "data.batch_size=20", "data.batch_size_per_device=3"])
    assert with_global_batch(cfg, 8).data.batch_size == 24
    assert with_global_batch(load_config("demo", BASE), 8).data.batch_size == 8  # unset: batch_size is global
    with pytest.raises(ConfigError, match="data.batch_size_per_device: must be positive"):
        load_config("demo", [*BASE, "data.batch_size_per_device=0"])
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    fit(load_config("demo", [*BASE, "train.epochs=1", "data.batch_size_per_device=4", f"out_dir={run}"]),
        progress=False)
    assert load_config(str(run / "config.yaml")).data.batch_size == 4  # the run records its global batch


def test_every_process_loads_its_part_of_the_same_global_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    for batch_size, steps, sizes in [(6, 3, [3] * 10 + [2] * 2), (8, 2, [4] * 8)]:
        cfg = load_config("demo", [*BASE, "data.num_train=43", f"data.batch_size={batch_size}"])
        train = build_splits(cfg.data, progress=False).train  # 34 images: two halves of 17
        one = list(epoch_batches(train, cfg, 1, True))
        parts = [list(epoch_batches(train, cfg, 1, True, Distributed(rank, 2))) for rank in range(2)]
        # 17 = 6 + 6 + 5 (the last batch split 3 + 2); 17 = 8 + 8 + 1: a batch of one image is left out, in one
        # process as in two
        assert len(one) == len(parts[0]) == len(parts[1]) == steps
        assert steps_per_epoch(len(train), cfg, True, 2) == steps
        got = []
        for whole, a, b in zip(one, *parts):
            for half in range(2):  # network and architecture batches alike
                for key in ("seg", "normal", "image"):
                    assert torch.equal(torch.cat([a[half][key], b[half][key]]), whole[half][key])
                got += [a[half]["image"].shape[0], b[half]["image"].shape[0]]
        assert sorted(got, reverse=True) == sizes


def test_metrics_pool_the_parts_of_a_set():
    torch.manual_seed(0)
    for name in ("seg", "normal", "depth", "object"):
        task = build_task(name, {"seg": 5, "object": 7})
        shape = (6, task.out_channels, 8, 8) if task.kind == "dense" else (6, task.out_channels)
        pred = torch.randn(shape)
        if name == "seg":
            target = torch.randint(0, 5, (6, 8, 8))
        elif name == "normal":
            target = torch.nn.functional.normalize(torch.randn(6, 3, 8, 8), dim=1)
        elif name == "depth":
            target = torch.rand(6, 1, 8, 8) + 0.1
        else:
            target = torch.randint(0, 7, (6,))
        whole, first, second = task.new_metric(), task.new_metric(), task.new_metric()
        whole.update(pred, target)
        first.update(pred[:2], target[:2])
        second.update(pred[2:], target[2:])
        first.merge(second)
        assert first.compute() == pytest.approx(whole.compute(), rel=1e-9), name


def test_shares_partition_a_batch():
    for n in range(0, 12):
        parts = [Distributed(rank, 3).shard(range(n)) for rank in range(3)]
        assert [i for p in parts for i in p] == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


#: saves both processes' generator states (each seeded by its rank) on rank 0, draws, restores, draws again
RNG_WORKER = textwrap.dedent('''
    import os, sys
    import torch
    import torch.distributed as tdist
    from auxnas.distributed import Distributed
    from auxnas.engine.state import gather_rng_states, set_rank_rng_state

    out = sys.argv[1]
    tdist.init_process_group("gloo")
    dist = Distributed(tdist.get_rank(), tdist.get_world_size())
    torch.manual_seed(100 + dist.rank)
    states = gather_rng_states(dist)
    if dist.is_main():
        torch.save({"rng": states[0], "rng_ranks": states}, f"{out}/last.pt")
    first = torch.rand(3)
    dist.barrier()
    torch.rand(5)  # the generator moves on, as training would
    set_rank_rng_state(torch.load(f"{out}/last.pt", weights_only=True), dist)
    again = torch.rand(3)
    torch.save({"first": first, "again": again}, f"{out}/draws-rank{dist.rank}.pt")
    tdist.destroy_process_group()
''')


def test_each_process_resumes_its_own_random_state(tmp_path):
    """last.pt holds every process's generator states; on resume each process takes its own (they differ: each
    process's CUDA generator is its own GPU's), so its draws continue where they left off."""
    worker = tmp_path / "rng_worker.py"
    worker.write_text(RNG_WORKER)
    launch([sys.executable, str(worker), str(tmp_path)])
    draws = [torch.load(tmp_path / f"draws-rank{rank}.pt", weights_only=True) for rank in range(2)]
    for d in draws:
        assert torch.equal(d["first"], d["again"])
    assert not torch.equal(draws[0]["first"], draws[1]["first"])
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    with pytest.raises(ValueError, match="written by 2 process"):
        set_rank_rng_state(saved, Distributed())
    set_rank_rng_state({"rng": saved["rng"]}, Distributed())  # a checkpoint from before rng_ranks
    assert torch.equal(torch.rand(3), draws[0]["first"])


#: node_first with both processes on one node (local ranks 0, 1) or on two nodes (local rank 0 each): a process
#: whose turn it is writes its marker; on one node rank 1 must see rank 0's marker, on two nodes rank 0 waits for
#: rank 1's (which would never come if rank 1 waited on a barrier for rank 0)
NODE_WORKER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import torch.distributed as tdist
    from auxnas.distributed import Distributed

    out, layout = Path(sys.argv[1]), sys.argv[2]
    tdist.init_process_group("gloo")
    rank = tdist.get_rank()
    dist = Distributed(rank, tdist.get_world_size(), local_rank=rank if layout == "one-node" else 0)
    with dist.node_first():
        (out / f"built-{layout}-{rank}").touch()
        other = out / f"built-{layout}-{1 - rank}"
        if layout == "one-node" and rank == 1:
            assert other.exists()
        if layout == "two-nodes" and rank == 0:
            deadline = time.time() + 60
            while not other.exists():
                assert time.time() < deadline, "rank 1 did not build on its own node"
                time.sleep(0.05)
    tdist.destroy_process_group()
''')


@pytest.mark.parametrize("layout", ["one-node", "two-nodes"])
def test_each_node_builds_the_data_first(tmp_path, layout):
    """The data cache is built by each node's first process while that node's others wait: not by global rank 0
    alone (the other nodes' processes would all build it at once)."""
    worker = tmp_path / "node_worker.py"
    worker.write_text(NODE_WORKER)
    launch([sys.executable, str(worker), str(tmp_path), layout], timeout=120)


def test_the_collective_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("AUXNAS_COLLECTIVE_TIMEOUT", raising=False)
    assert collective_timeout().total_seconds() == COLLECTIVE_TIMEOUT
    monkeypatch.setenv("AUXNAS_COLLECTIVE_TIMEOUT", "90")
    assert collective_timeout().total_seconds() == 90
    for bad in ("soon", "0", "-5", "inf"):
        monkeypatch.setenv("AUXNAS_COLLECTIVE_TIMEOUT", bad)
        with pytest.raises(ValueError, match="AUXNAS_COLLECTIVE_TIMEOUT.*positive number of seconds"):
            collective_timeout()
