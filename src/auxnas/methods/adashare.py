"""AdaShare and AdaShare-Aux: one shared backbone, a learned select-or-skip policy per task and cell.

AdaShare (Sun et al., NeurIPS 2020): every task runs the shared backbone along its own path;
at every skippable cell it either executes the cell or skips it (identity, or the block's
shortcut). The policy is two logits per task and cell, sampled with straight-through
Gumbel-softmax in training (hard 0/1 decisions, gradients to the logits; or the released code's
soft samples) and taken as the argmax in evaluation. A cell can be skipped when its output has
its input's shape (a ResNet block without downsampling, a ViT block, a same-width VGG conv); with
``skip_downsample`` a ResNet block with a shortcut (``downsample``) can be skipped too, through
that shortcut, as in the released code. The others always execute.

AdaShare-Aux (the Aux-NAS paper's baseline, ``fix_primary=True``): the primary task's policy is
fixed to "execute every cell" and has no sparsity term, so its path is exactly the single-task
network. See docs/adashare.md.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones import Branch, build_head
from ..config import ExperimentConfig
from ..tasks import Task
from .base import SEARCH_OPTIONS, MultiTaskModel

_ADASHARE_OPTIONS = ("sparsity_weight", "sharing_weight", "temperature_start", "temperature_end", "curriculum",
                     "curriculum_end", "policy_init", "adashare_sampling", "adashare_skip_downsample",
                     "adashare_sparsity", *SEARCH_OPTIONS)
#: method.name -> the ``method.*`` options it takes (its policy logits are architecture weights)
OPTIONS: dict[str, tuple[str, ...]] = {"adashare": _ADASHARE_OPTIONS, "adashare_aux": _ADASHARE_OPTIONS}


@torch.no_grad()
def shape_preserving_cells(branch: Branch, image_size: int) -> tuple[bool, ...]:
    """Whether each cell's output has its input's shape, probed with one ``image_size`` image in eval mode."""
    was_training = branch.training
    branch.eval()
    param = next(branch.parameters())
    h = branch.stem(torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype))
    same = []
    for cell in branch.cells:
        out = cell(h)
        same.append(out.shape == h.shape)
        h = out
    branch.train(was_training)
    return tuple(same)


def shortcut(cell: nn.Module) -> nn.Module | None:
    """A residual block's shortcut module (timm ResNet blocks: ``downsample``), or None when it has none."""
    return getattr(cell, "downsample", None)


def skipped_cell(cell: nn.Module, through_shortcut: bool) -> nn.Module:
    """What replaces a skipped ``cell`` in a plain network: its shortcut module, or the identity."""
    return shortcut(cell) if through_shortcut else nn.Identity()


class AdaShare(MultiTaskModel):
    """Shared stem and cells, one head per task, and a per-task select-or-skip policy over the skippable cells.

    Args:
        tasks, primary: the tasks and the primary task's name.
        branch: the primary's branch; its stem and cells are shared, its head is the primary head.
        aux_heads: one head per auxiliary task, reading the same stage-end taps as ``branch.head``.
        image_size: input size used to find the shape-preserving (skippable) cells.
        fix_primary: AdaShare-Aux: the primary executes every cell and has no policy.
        sampling: training decisions: "hard" straight-through Gumbel-softmax samples (0/1), or "soft" relaxed
            samples in (0, 1) that mix the cell's output with its skip path (released code).
        skip_downsample: cells with a shortcut module (``downsample``) are skippable too; skipping one runs its
            shortcut instead of the identity (released code).
        sparsity: "log": ``sum log p_exec`` over learnable cells (paper; unbounded below); "bounded": per task the
            mean over learnable cells of ``-log(1 - p_exec)``, the cross-entropy towards "skip" (released code;
            at least 0).
        sparsity_weight: weight of the sparsity term (encourages skipping).
        sharing_weight: weight of ``sum_{a<b} sum_l (n - l) / n * |p_exec(a, l) - p_exec(b, l)|``.
        temperature_start, temperature_end: Gumbel-softmax temperature, annealed geometrically over training.
        curriculum: learn only the last k skippable cells' policies, k growing linearly from 1 to all at
            ``curriculum_end`` of training; the other cells execute.
        policy_init: initial probability of executing each skippable cell.
    """

    def __init__(
        self,
        tasks: dict[str, Task],
        primary: str,
        branch: Branch,
        aux_heads: dict[str, nn.Module],
        image_size: int = 64,
        fix_primary: bool = False,
        sampling: Literal["hard", "soft"] = "hard",
        skip_downsample: bool = False,
        sparsity: Literal["log", "bounded"] = "log",
        sparsity_weight: float = 0.05,
        sharing_weight: float = 0.05,
        temperature_start: float = 5.0,
        temperature_end: float = 0.5,
        curriculum: bool = True,
        curriculum_end: float = 0.5,
        policy_init: float = 0.5,
    ) -> None:
        super().__init__(tasks, primary)
        aux = set(tasks) - {primary}
        if set(aux_heads) != aux:
            raise ValueError(f"need one head per auxiliary task {sorted(aux)}, got {sorted(aux_heads)}")
        if not 0.0 < policy_init < 1.0:
            raise ValueError(f"policy_init must be in (0, 1), got {policy_init}")
        if not 0.0 < curriculum_end <= 1.0:
            raise ValueError(f"curriculum_end must be in (0, 1], got {curriculum_end}")
        if temperature_start <= 0 or temperature_end <= 0:
            raise ValueError(f"temperatures must be positive, got {temperature_start}, {temperature_end}")
        if sampling not in ("hard", "soft"):
            raise ValueError(f"sampling must be 'hard' or 'soft', got {sampling!r}")
        if sparsity not in ("log", "bounded"):
            raise ValueError(f"sparsity must be 'log' or 'bounded', got {sparsity!r}")
        self.branch = branch
        self.aux_heads = nn.ModuleDict(aux_heads)
        self.names = [primary, *(t for t in tasks if t != primary)]
        self.fix_primary = fix_primary
        self.sampling = sampling
        self.sparsity = sparsity
        self.sparsity_weight = sparsity_weight
        self.sharing_weight = sharing_weight
        self.temperatures = (temperature_start, temperature_end)
        self.curriculum = curriculum
        self.curriculum_end = curriculum_end
        #: cells skipped through their shortcut instead of the identity
        self.shortcut_cells = [i for i, c in enumerate(branch.cells) if skip_downsample and shortcut(c) is not None]
        same = shape_preserving_cells(branch, image_size)
        self.skippable = tuple(s or i in self.shortcut_cells for i, s in enumerate(same))
        self.skip_cells = [i for i, s in enumerate(self.skippable) if s]
        self.policy_tasks = [t for t in self.names if not (fix_primary and t == primary)]
        if self.skip_cells and self.policy_tasks:
            init = torch.tensor([math.log(policy_init), math.log(1.0 - policy_init)])
            self.policy_logits = nn.Parameter(init.repeat(len(self.policy_tasks), len(self.skip_cells), 1))
        else:
            self.register_parameter("policy_logits", None)
        # fraction of training done, set by the loop each step (``set_progress``); kept in checkpoints
        self.register_buffer("progress", torch.zeros(()))

    def set_progress(self, progress: float) -> None:
        """Record the fraction of training done: drives the temperature and the curriculum of ``forward``."""
        self.progress.fill_(progress)

    def temperature(self, progress: float) -> float:
        """Gumbel-softmax temperature at ``progress`` in [0, 1]: geometric from start to end."""
        start, end = self.temperatures
        return start * (end / start) ** min(max(progress, 0.0), 1.0)

    def learnable_cells(self, progress: float) -> Tensor:
        """Boolean mask over ``skip_cells``: the cells whose policy is learned at ``progress`` (the last k)."""
        n = len(self.skip_cells)
        k = n if not self.curriculum else min(n, max(1, math.ceil(n * progress / self.curriculum_end)))
        return torch.arange(n, device=self.progress.device) >= n - k

    def _scatter(self, values: Tensor | None, progress: float) -> Tensor:
        """``len(names) x num_cells`` matrix: ``values`` (policy tasks x skip cells) at learnable cells, 1 elsewhere."""
        out = torch.ones(len(self.names), len(self.skippable), device=self.progress.device)
        if self.policy_logits is None:
            return out
        values = torch.where(self.learnable_cells(progress), values, torch.ones_like(values))
        rows = torch.tensor([self.names.index(t) for t in self.policy_tasks], device=out.device)
        cols = torch.tensor(self.skip_cells, device=out.device)
        return out.index_put((rows[:, None], cols[None, :]), values)

    def exec_probabilities(self, progress: float | None = None) -> Tensor:
        """``p_exec`` per task (rows, primary first) and cell: 1 for fixed, non-skippable and not-yet-learned cells."""
        progress = float(self.progress) if progress is None else progress
        probs = None if self.policy_logits is None else self.policy_logits.softmax(dim=-1)[..., 0]
        return self._scatter(probs, progress)

    def decisions(self) -> Tensor:
        """Execute (1) or skip (0) per task and cell: Gumbel samples in training (soft ones in (0, 1) with
        ``sampling="soft"``), else the argmax."""
        progress = float(self.progress)
        if not self.training or self.policy_logits is None:
            return (self.exec_probabilities(progress) >= 0.5).float()
        hard = self.sampling == "hard"
        sample = F.gumbel_softmax(self.policy_logits, tau=self.temperature(progress), hard=hard)[..., 0]
        return self._scatter(sample, progress)

    def policy(self) -> dict[str, list[bool]]:
        """The deterministic (evaluation) policy: task -> whether each cell executes."""
        executes = (self.exec_probabilities() >= 0.5).tolist()
        return {t: executes[k] for k, t in enumerate(self.names)}

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [] if self.policy_logits is None else [self.policy_logits]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.branch.stem.parameters(), *self.branch.cells.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        return self.branch.last_layer_weight()

    def architecture_penalty(self, progress: float) -> Tensor | None:
        """Sparsity (``sum log p_exec``, or its bounded form) plus depth-weighted sharing terms.

        Only learnable cells enter the sparsity term; cells with a fixed decision count as executed
        (``p_exec = 1``) in the sharing term (AdaShare-Aux's primary).
        """
        if self.policy_logits is None:
            return None
        learnable = self.learnable_cells(progress)
        log_probs = self.policy_logits.log_softmax(dim=-1)
        if self.sparsity == "log":
            sparsity = (log_probs[..., 0] * learnable).sum()
        else:  # cross-entropy towards "skip", averaged over the learnable cells of each task, summed over tasks
            sparsity = -(log_probs[..., 1] * learnable).sum() / learnable.sum()
        probs = self.exec_probabilities(progress)
        n = probs.shape[1]
        depth_weight = (n - torch.arange(n, device=probs.device)) / n
        pairs = (probs[:, None, :] - probs[None, :, :]).abs() * depth_weight
        sharing = pairs.sum() / 2  # every unordered pair of tasks counted once
        return self.sparsity_weight * sparsity + self.sharing_weight * sharing

    def _skip(self, i: int, h: Tensor) -> Tensor:
        """What skipping cell ``i`` outputs: its shortcut's output for a shortcut cell, else its input."""
        return shortcut(self.branch.cells[i])(h) if i in self.shortcut_cells else h

    def _run_cells(self, h: Tensor, decisions: Tensor) -> list[Tensor]:
        """Outputs of every cell along one task's path; skipped cells pass their input through (or its shortcut)."""
        outputs = []
        executes = None if self.training else decisions.tolist()
        for i, cell in enumerate(self.branch.cells):
            if not self.skippable[i]:
                h = cell(h)
            elif self.training:  # keeps the gradient to the decision (straight-through, or the soft sample's)
                d = decisions[i].to(h.dtype)
                h = d * cell(h) + (1 - d) * self._skip(i, h)
            else:
                h = cell(h) if executes[i] else self._skip(i, h)
            outputs.append(h)
        return outputs

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Every task's prediction along its own path (one pass of the cells per task)."""
        decisions = self.decisions()
        stem = self.branch.stem(x)
        size = (x.shape[-2], x.shape[-1])
        ends = self.branch.stage_ends
        preds = {}
        for k, name in enumerate(self.names):
            outputs = self._run_cells(stem, decisions[k])
            taps = [outputs[i] for i in ends]
            head = self.branch.head if name == self.primary else self.aux_heads[name]
            preds[name] = head(taps, size)
        return preds

    def skipped_cells(self, task: str | None = None) -> list[int]:
        """Cells that ``task`` (default: the primary) skips under the deterministic policy."""
        executes = self.policy()[self.primary if task is None else task]
        return [i for i, e in enumerate(executes) if not e]

    def primary_network(self) -> Branch:
        """The primary path as a plain ``Branch``: skipped cells become ``nn.Identity``, or their shortcut."""
        branch = copy.deepcopy(self.branch)
        for i in self.skipped_cells():
            branch.cells[i] = skipped_cell(branch.cells[i], i in self.shortcut_cells)
        return branch

    def export_extras(self) -> dict[str, list[int]]:
        """The primary's skipped cells (none for AdaShare-Aux), and those of them replaced by their shortcut."""
        skipped = self.skipped_cells()
        return {"fusion_post_cells": [], "skipped_cells": skipped,
                "shortcut_cells": [i for i in skipped if i in self.shortcut_cells]}


def build(cfg: ExperimentConfig, tasks: dict[str, Task], branch: Callable[[Task], Branch]) -> AdaShare:
    """AdaShare (``adashare``), or AdaShare-Aux (``adashare_aux``: the primary executes every cell).

    ``branch(task)`` builds a task's branch (initialised as ``init.*`` asks).
    """
    m, size = cfg.method, cfg.data.image_size
    main = branch(tasks[cfg.tasks.primary])
    heads = {name: build_head(main, task, size) for name, task in tasks.items() if name != cfg.tasks.primary}
    return AdaShare(
        tasks, cfg.tasks.primary, main, heads, image_size=size, fix_primary=m.name == "adashare_aux",
        sampling=m.adashare_sampling, skip_downsample=m.adashare_skip_downsample, sparsity=m.adashare_sparsity,
        sparsity_weight=m.sparsity_weight, sharing_weight=m.sharing_weight,
        temperature_start=m.temperature_start, temperature_end=m.temperature_end,
        curriculum=m.curriculum, curriculum_end=m.curriculum_end, policy_init=m.policy_init,
    )
