"""What a run changes as it trains, built in one place (``build_train_state``): the model, its optimisers and
schedules, the weighting method, the progress and selection so far, and the random number generators' states.
``TrainState.state_dict`` is what ``last.pt`` holds and ``--resume`` restores."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ExperimentConfig
from ..distributed import Distributed
from ..methods import MultiTaskModel, trains_bilevel
from ..weighting import Weighting, build_weighting
from .optim import build_architecture_optimizer, build_optimizer, build_schedule
from .parallel import DataParallel
from .record import EpochRecord


def rng_state() -> dict[str, Any]:
    """The random number generators' states (Python, NumPy, torch CPU and CUDA), in weights-only-loadable types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(), "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                  "cached": cached},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


def gather_rng_states(dist: Distributed) -> list[dict[str, Any]] | None:
    """Every process's ``rng_state()``, in rank order, on rank 0 (None on the others): a collective."""
    return dist.gather_on_main(rng_state())


def set_rank_rng_state(state: dict[str, Any], dist: Distributed) -> None:
    """Restore this process's own generators from a ``TrainState.state_dict``: ``rng_ranks[rank]``.

    Each process keeps its own CUDA generator (its GPU's), so restoring rank 0's on every process would make
    their draws (AdaShare's Gumbel samples) differ. A checkpoint of another number of processes is refused
    (``ValueError``): its per-process states cannot be mapped onto these. One without ``rng_ranks`` (written
    before they were saved) gives every process its ``rng``, as it then did.
    """
    ranks = state.get("rng_ranks") or [state["rng"]] * dist.world_size
    if len(ranks) != dist.world_size:
        raise ValueError(f"last.pt was written by {len(ranks)} process(es), this run has {dist.world_size}: resume "
                         f"it with {len(ranks)} (torchrun --nproc_per_node), or start a new run")
    set_rng_state(ranks[dist.rank])


@dataclass
class TrainState:
    """Everything the steps read and the loop changes: what ``last.pt`` holds and ``--resume`` restores.

    The model, its optimisers and schedules, the weighting method, what the steps need to know (loss weights,
    device, autocast, the processes, single-level search), the progress (step, finished epochs; the regulariser
    ramp and data order follow from them), the selection so far, the history, and the link strengths recorded
    along training. ``state_dict`` adds the random number generators.
    """

    model: MultiTaskModel
    weighting: Weighting
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    #: task -> its weight in the static weighted sum of the losses (``tasks.loss_weights``)
    loss_weights: dict[str, float]
    device: torch.device
    amp: bool
    #: how the steps train over the processes (one process: every part of it is the plain code)
    parallel: DataParallel
    arch_optimizer: torch.optim.Optimizer | None = None
    arch_schedule: torch.optim.lr_scheduler.LRScheduler | None = None
    #: single-level search: the network step also updates the architecture weights (no architecture step)
    single_level: bool = False
    #: network updates made, and epochs finished
    step: int = 0
    epoch: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    val_best: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[EpochRecord] = dataclasses.field(default_factory=list)
    #: what the model records along training (``MultiTaskModel.recorded_values``: ``steps``, ``values``,
    #: ``names``); empty for a model that records nothing
    links: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: wall seconds the run took up to its last finished epoch, every session counted (a resume continues it)
    elapsed_s: float = 0.0

    @property
    def bilevel(self) -> bool:
        """Whether architecture steps on their own batches alternate with the network steps."""
        return self.arch_optimizer is not None and not self.single_level

    def stepped_parameters(self) -> list[nn.Parameter]:
        """What the network step updates (and, with several processes, averages the gradients of)."""
        stepped = [p for group in self.optimizer.param_groups for p in group["params"]]
        return stepped + self.model.architecture_parameters() if self.single_level else stepped

    def state_dict(self) -> dict[str, Any]:
        """Plain containers of tensors and numbers (a checkpoint loadable with ``weights_only=True``); the weighting's
        state is not among them: the checkpoint holds it once, beside (``checkpoint_payload``). Every process must
        call it (it gathers their generators' states: ``rng_ranks``, in rank order, complete on rank 0)."""
        rng_ranks = gather_rng_states(self.parallel.dist)
        optional = {k: getattr(self, k).state_dict() for k in ("arch_optimizer", "arch_schedule")
                    if getattr(self, k) is not None}
        return {
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), **optional,
            "step": self.step, "epoch": self.epoch,
            "best_value": self.best_value, "best_epoch": self.best_epoch, "val_best": self.val_best,
            "history": [r.to_dict() for r in self.history], "links": self.links, "elapsed_s": self.elapsed_s,
            "rng": rng_ranks[0] if rng_ranks else rng_state(),
            "rng_ranks": rng_ranks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s content (the model's weights are loaded separately)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.arch_optimizer is not None:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
            self.arch_schedule.load_state_dict(state["arch_schedule"])
        self.weighting.load_state_dict(state["weighting"])  # the checkpoint's, beside this state (checkpoint_payload)
        for key in ("step", "epoch", "best_value", "best_epoch", "val_best", "links"):
            setattr(self, key, state[key])
        self.history = [EpochRecord.from_dict(r) for r in state["history"]]
        self.elapsed_s = float(state.get("elapsed_s", 0.0))  # a last.pt of an older auxnas has none
        set_rank_rng_state(state, self.parallel.dist)

    def record_links(self) -> None:
        """Append the model's current recorded values (``MultiTaskModel.recorded_values``), if it records any."""
        if self.model.record_key is not None:
            self.links["steps"].append(self.step)
            self.links["values"].append(self.model.recorded_values())


def model_weighting(cfg: ExperimentConfig, model: MultiTaskModel) -> Weighting:
    """The weighting method of ``cfg`` over ``model``'s tasks (with their likelihoods)."""
    likelihoods = {name: task.likelihood for name, task in model.tasks.items()}
    return build_weighting(cfg.weighting.name, list(model.tasks), cfg.tasks.primary, likelihoods,
                           **cfg.weighting.options)


def build_train_state(
    cfg: ExperimentConfig, model: MultiTaskModel, device: torch.device, total_steps: int,
    dist: Distributed | None = None, weighting: Weighting | None = None,
) -> TrainState:
    """The training state of ``model`` (on ``device``) under ``cfg``: the weighting method (``weighting``, or
    ``model_weighting``'s), the network optimiser (the model's groups, ``MultiTaskModel.optimizer_groups``, and the
    weighting's own) and its schedule over ``total_steps`` network steps, for a model with architecture weights
    their optimiser and schedule (``method.arch_*``), and the data-parallel strategy over ``dist``'s processes
    (``DataParallel``; one process by default)."""
    weighting = model_weighting(cfg, model) if weighting is None else weighting
    weighting.to(device)
    network = model.optimizer_groups(cfg.train.lr, cfg.train.weight_decay, cfg.method)
    optimizer = build_optimizer([*network, *weighting.optimizer_groups()], cfg.train)
    arch_params = model.architecture_parameters()
    state = TrainState(
        model, weighting, optimizer, build_schedule(optimizer, total_steps, cfg.train),
        loss_weights={name: cfg.tasks.loss_weights.get(name, 1.0) for name in model.tasks}, device=device,
        amp=cfg.train.amp, parallel=DataParallel.build(dist or Distributed(), device, model, weighting),
        single_level=bool(arch_params) and not trains_bilevel(cfg, model),
    )
    if arch_params:
        state.arch_optimizer, state.arch_schedule = build_architecture_optimizer(arch_params, cfg, total_steps)
    if model.record_key is not None:
        state.links = {"steps": [], "values": [], "names": model.record_names()}
    return state
