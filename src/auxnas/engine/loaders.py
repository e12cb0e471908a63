"""The loaders of a run: the training epochs' batch pairs (shuffled, halved for the bilevel search, oversampled,
sharded over processes) and the evaluation loaders."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..config import ExperimentConfig
from ..data import PartiallyLabelled
from ..distributed import Distributed, SeededSamples

#: the fewest images a training batch may have: BatchNorm cannot train on one
MIN_TRAIN_BATCH = 2


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    """A loader whose order (and augmentation draws) depend only on ``seed``."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=False,
        generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
    )


def shuffled_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """Positions ``0 .. n-1`` in the batches that ``make_loader(dataset_of_n, batch_size, True, seed)`` draws (the
    same sampler and generator, so the same order)."""
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return [batch.tolist() for batch in loader]


def process_loader(
    dataset: Dataset, batches: Sequence[Sequence[int]], seed: int, dist: Distributed, num_workers: int = 0
) -> DataLoader:
    """A loader of this process's part of each of ``batches`` (indices into ``dataset``) of the global batches.

    One process: the batches as they are. Several: each process loads ``Distributed.shard`` of every batch (a
    batch with fewer images than processes is left out), each image's random draws (augmentation) seeded by its
    position in the epoch (``SeededSamples``), so that they do not depend on which process loads it.
    """
    if dist.enabled:
        flat = [i for batch in batches for i in batch]
        dataset = SeededSamples(dataset, flat, seed)
        ends = list(itertools.accumulate(len(batch) for batch in batches))
        batches = [dist.shard(range(end - len(batch), end)) for batch, end in zip(batches, ends)
                   if len(batch) >= max(dist.world_size, MIN_TRAIN_BATCH)]
    return DataLoader(dataset, batch_sampler=[list(b) for b in batches], num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed + dist.rank), pin_memory=torch.cuda.is_available())


def evaluation_loader(dataset: Dataset, cfg: ExperimentConfig, dist: Distributed) -> DataLoader:
    """The loader of ``dataset`` for evaluation: all of it in order, or with several processes this process's
    contiguous part (no image twice, none left out), in batches of its share of ``data.batch_size``."""
    if not dist.enabled:
        return make_loader(dataset, cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    own, size = dist.shard(range(len(dataset))), cfg.data.batch_size // dist.world_size
    return DataLoader(dataset, batch_sampler=[own[i : i + size] for i in range(0, len(own), size)],
                      num_workers=cfg.data.num_workers, generator=torch.Generator().manual_seed(cfg.seed),
                      pin_memory=torch.cuda.is_available())  # its own generator: the global one is the model's


def steps_per_epoch(num_train: int, cfg: ExperimentConfig, bilevel: bool, world_size: int = 1) -> int:
    """Steps in every epoch (the same for all epochs): one per network batch, of half the data when bilevel.

    A last batch with fewer than ``MIN_TRAIN_BATCH`` images, or than ``world_size`` processes, is left out.
    """
    n = num_train // 2 if bilevel else num_train
    steps = n // cfg.data.batch_size + (n % cfg.data.batch_size >= max(world_size, MIN_TRAIN_BATCH))
    return steps if cfg.train.max_steps_per_epoch is None else min(steps, cfg.train.max_steps_per_epoch)


def oversampled(indices: list[int], has_label: np.ndarray, share: float, generator: torch.Generator) -> list[int]:
    """``len(indices)`` draws from ``indices`` in which the images with the primary label make up ``share``.

    Those images are cycled (each drawn at least once) and the others fill the rest, drawn without
    replacement; the result is shuffled. With at least ``share`` of them labelled already, every image once.
    """
    labelled = [i for i in indices if has_label[i]]
    unlabelled = [i for i in indices if not has_label[i]]
    wanted = round(share * len(indices))
    if not labelled or wanted <= len(labelled):
        draws = indices
    else:
        cycled = [labelled[k] for k in torch.randperm(len(labelled), generator=generator).tolist()]
        rest = [unlabelled[k] for k in torch.randperm(len(unlabelled), generator=generator).tolist()]
        draws = [cycled[k % len(cycled)] for k in range(wanted)] + rest[: len(indices) - wanted]
    return [draws[k] for k in torch.randperm(len(draws), generator=generator).tolist()]


def primary_mask(train: Dataset, cfg: ExperimentConfig) -> np.ndarray | None:
    """Which training images carry the primary label (None: every one, the set is not partially labelled)."""
    return train.labelled.get(cfg.tasks.primary) if isinstance(train, PartiallyLabelled) else None


def held_out_images(train: Dataset, cfg: ExperimentConfig, share: float) -> list[int]:
    """The training images a meta-learned weighting holds out as its own set (``Weighting.meta_split``): ``share`` of
    those that carry a primary label (at least ``MIN_TRAIN_BATCH``, a batch BatchNorm can train on), drawn once for
    the run from ``seed``; [] when ``share`` is 0. The meta-objective is the primary's loss, so only those images
    serve it. ValueError when too few training images carry a primary label to leave one to the network."""
    if share <= 0:
        return []
    mask = primary_mask(train, cfg)
    labelled = list(range(len(train))) if mask is None else [i for i in range(len(train)) if mask[i]]
    count = max(MIN_TRAIN_BATCH, round(share * len(labelled)))
    if count >= len(labelled):
        raise ValueError(f"weighting.name={cfg.weighting.name} holds out {share:g} (at least {MIN_TRAIN_BATCH}) of "
                         f"the training images with a primary label for its meta-objective, and {len(labelled)} "
                         f"carry one: it needs at least {MIN_TRAIN_BATCH + 1}, so that one is left to the network; "
                         "label more primary images or use another weighting")
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 - 1)
    return sorted(labelled[k] for k in torch.randperm(len(labelled), generator=generator)[:count].tolist())


def epoch_pools(
    num_train: int, cfg: ExperimentConfig, epoch: int, bilevel: bool, held_out: Sequence[int] = ()
) -> tuple[list[int], list[int] | None, torch.Generator]:
    """The images of one epoch's network batches and architecture batches (None unless bilevel), and the epoch's
    generator (what ``oversampled`` then draws with). ``held_out`` images are in neither. Bilevel: the images are
    reshuffled and split into two disjoint halves every epoch, the first half the architecture's."""
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    excluded = set(held_out)
    kept = [i for i in range(num_train) if i not in excluded]
    if not bilevel:
        return kept, None, generator
    if len(kept) < 2:
        raise ValueError("bilevel optimisation needs at least 2 training images")
    order = [kept[k] for k in torch.randperm(len(kept), generator=generator).tolist()]
    half = len(order) // 2
    return order[half:], order[:half], generator


def _batches_of(
    train: Dataset, cfg: ExperimentConfig, indices: list[int], seed: int, generator: torch.Generator
) -> list[list[int]]:
    """``indices`` in shuffled batches of ``data.batch_size`` (``seed``), or ``oversampled`` (``generator``) with
    ``data.oversample_primary``."""
    bs, mask = cfg.data.batch_size, primary_mask(train, cfg)
    if mask is not None and cfg.data.oversample_primary is not None:
        draws = oversampled(indices, mask, cfg.data.oversample_primary, generator)
        return [draws[i : i + bs] for i in range(0, len(draws), bs)]
    return [[indices[k] for k in batch] for batch in shuffled_batches(len(indices), bs, seed)]


def epoch_batches(
    train: Dataset, cfg: ExperimentConfig, epoch: int, bilevel: bool, dist: Distributed | None = None,
    held_out: Sequence[int] = (),
) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor] | None]]:
    """The ``(network batch, architecture batch or None)`` pairs of one epoch (``steps_per_epoch`` of them), from
    ``epoch_pools``. With ``data.oversample_primary`` each pool's draws are ``oversampled``.

    ``data.batch_size`` is the global batch: with several processes (``dist``) every process draws the same
    global batches of both pools (same seeds) and loads its part of each (``process_loader``).
    """
    dist = dist or Distributed()
    seed = cfg.seed * 100_003 + epoch
    network, architecture, generator = epoch_pools(len(train), cfg, epoch, bilevel, held_out)
    network_seed = seed + 2 if bilevel else seed
    loaders = [process_loader(train, _batches_of(train, cfg, network, network_seed, generator), network_seed, dist,
                              cfg.data.num_workers)]
    if architecture is not None:
        loaders.append(process_loader(train, _batches_of(train, cfg, architecture, seed + 1, generator), seed + 1,
                                      dist, cfg.data.num_workers))
    pairs = zip(*loaders) if bilevel else ((batch, None) for batch in loaders[0])
    return itertools.islice(pairs, steps_per_epoch(len(train) - len(held_out), cfg, bilevel, dist.world_size))


def meta_batches(
    train: Dataset, cfg: ExperimentConfig, epoch: int, pool: Sequence[int], dist: Distributed | None = None
) -> Iterator[dict[str, Tensor]]:
    """Endless meta batches of a meta-learned weighting in ``epoch``: ``pool`` (its held-out images, or the epoch's
    network images) in shuffled batches, reshuffled at every pass (oversampled as the network's with
    ``data.oversample_primary``); loaded only as the weighting asks for them."""
    dist = dist or Distributed()
    for cycle in itertools.count():
        seed = (cfg.seed * 100_003 + epoch) * 1_000 + 3 + cycle
        batches = [b for b in _batches_of(train, cfg, list(pool), seed, torch.Generator().manual_seed(seed))
                   if len(b) >= max(dist.world_size, MIN_TRAIN_BATCH)]
        if not batches:
            raise ValueError(f"the meta batches' {len(pool)} images make no batch of at least "
                             f"{max(dist.world_size, MIN_TRAIN_BATCH)} (data.batch_size {cfg.data.batch_size}, "
                             f"{dist.world_size} process(es)): use more training images or a larger batch")
        yield from process_loader(train, batches, seed, dist, cfg.data.num_workers)
