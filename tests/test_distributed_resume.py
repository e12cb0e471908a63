"""Resuming data-parallel training: an interrupted two-process run resumes to where one uninterrupted process ends
(the comparison: ``test_distributed_equivalence.py``), and each process resumes its own random state."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from distributed_helpers import BASE, compare, launch, run_single, run_workers

from auxnas.config import load_config
from auxnas.data import build_splits
from auxnas.distributed import Distributed
from auxnas.engine.state import set_rank_rng_state


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
