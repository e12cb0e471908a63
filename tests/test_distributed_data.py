"""Data in data-parallel training: the global batch and its split among the processes, every process loading its
part of the same global batches, metrics pooled over the parts, each node building the data first."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from distributed_helpers import BASE, launch

from auxnas.config import ConfigError, load_config
from auxnas.data import build_splits
from auxnas.distributed import Distributed
from auxnas.engine.fit import with_global_batch
from auxnas.engine.loaders import epoch_batches, meta_batches, steps_per_epoch
from auxnas.tasks import build_task
from auxnas.train import fit


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
        one = [(*pair, meta) for pair, meta in zip(epoch_batches(train, cfg, 1, True), meta_batches(
            train, cfg, 1, range(len(train))))]
        parts = [[(*pair, meta) for pair, meta in zip(epoch_batches(train, cfg, 1, True, Distributed(rank, 2)),
                                                      meta_batches(train, cfg, 1, range(len(train)),
                                                                   Distributed(rank, 2)))]
                 for rank in range(2)]
        # 17 = 6 + 6 + 5 (the last batch split 3 + 2); 17 = 8 + 8 + 1: a batch of one image is left out, in one
        # process as in two
        assert len(one) == len(parts[0]) == len(parts[1]) == steps
        assert steps_per_epoch(len(train), cfg, True, 2) == steps
        got = []
        for whole, a, b in zip(one, *parts):
            for kind in range(3):  # network, architecture and meta batches alike
                for key in ("seg", "normal", "image"):
                    assert torch.equal(torch.cat([a[kind][key], b[kind][key]]), whole[kind][key])
                got += [a[kind]["image"].shape[0], b[kind]["image"].shape[0]] if kind < 2 else []
            assert not torch.equal(whole[2]["image"], whole[0]["image"])  # the meta batch: another draw
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
