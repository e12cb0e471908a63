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
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from distributed_helpers import BASE, compare, launch, run_single, run_workers

from auxnas.config import load_config
from auxnas.data import build_splits
from auxnas.distributed import Distributed
from auxnas.engine.loaders import epoch_batches
from auxnas.weighting import WEIGHTINGS


@pytest.mark.parametrize("setting", [
    ["weighting.name=equal", "train.channels_last=true"],  # DistributedDataParallel's buckets of NHWC weights
    # a gradient method (per-task gradients averaged before the surgery) with scarce segmentation labels, so that
    # in some steps one process holds segmentation labels and the other none
    ["weighting.name=gcs", "data.labelled_fraction={seg: 0.25}"],
    # a loss weighting (through DistributedDataParallel) with steps where the segmentation head is unused on every
    # process (no label in the global batch) or on one (a zero loss there); the fusion projections in a
    # learning-rate group of their own
    ["weighting.name=equal", "data.labelled_fraction={seg: 0.25}", "method.fusion_lr_factor=2"],
    # a meta-learned weighting: its look-ahead's gradients and losses averaged over the processes, on meta batches
    # where one process may hold segmentation labels and the other none
    ["weighting.name=auto_lambda", "weighting.options.lr=0.01", "data.labelled_fraction={seg: 0.25}"],
    # the implicit hypergradient: its Hessian-vector products averaged over the processes
    ["weighting.name=auxilearn", "weighting.options={every: 2, lr: 0.1, aux_share: 0.1}"],
], ids=["equal-channels-last", "gcs-partial-labels", "equal-partial-labels", "auto_lambda-partial-labels",
        "auxilearn"])
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


def test_weightings_say_whether_they_need_task_gradients():
    """Loss weightings run the data-parallel network step through DistributedDataParallel; the methods that need
    each task's gradient (gradient surgery, GradNorm's norms) average those by hand."""
    linear = {name for name, cls in WEIGHTINGS.items() if not cls.needs_task_gradients}
    assert linear == {"equal", "uncertainty", "dwa", "auto_lambda", "auxilearn"}  # meta-learned: their meta step apart


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
    shared, weights = pcgrad["shared_weights"], pcgrad["network_weights"]
    for step in pcgrad["network"]["each"]:  # per-task gradients (the has-gradient flags, the gradients), losses
        assert step["python"]["_all_reduce_"] == 4
        # each gradient crosses once: the two tasks' shared gradients, then the others' (with BatchNorm's statistics,
        # flags and losses, a few thousand elements); sending the combined shared gradients again would add ``shared``
        assert 2 * shared + weights - shared <= step["python_elements"] < 2 * shared + weights - shared // 2


#: fit in which the second network step's global batch has no label anywhere (every process's share is empty)
EMPTY_STEP_WORKER = textwrap.dedent('''
    import dataclasses, os, sys
    import torch
    import auxnas.engine.fit as fit_module
    from auxnas.config import load_config

    out, *overrides = sys.argv[1:]
    real, calls = fit_module.network_step, []

    def network_step(state, batch, *args, **kwargs):
        calls.append(state)
        if len(calls) != 2:
            return real(state, batch, *args, **kwargs)
        batch = dataclasses.replace(batch, shares={})  # as DataParallel.batch makes it when no process holds a label
        before = [p.detach().clone() for p in state.model.parameters()]
        assert real(state, batch, *args, **kwargs) == ({}, {})
        assert all(torch.equal(a, p) for a, p in zip(before, state.model.parameters()))
        return {}, {}

    fit_module.network_step = network_step
    fit_module.fit(load_config("demo", overrides), progress=False)
    assert type(calls[0].parallel.wrapper).__name__ == "DistributedDataParallel" and len(calls) == 4
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
