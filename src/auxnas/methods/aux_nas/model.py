"""Aux-G and Aux-NAS: one branch per task, joined by cross-task links.

Every auxiliary branch is linked only to the primary branch (no auxiliary-to-
auxiliary links), so cost grows linearly with the number of auxiliary tasks.

* primary-to-auxiliary (p2a) links fuse primary cell outputs into auxiliary
  cells: the primary branch receives auxiliary *gradients* only.
* auxiliary-to-primary (a2p) links (Aux-NAS only) fuse auxiliary features into
  the primary branch; an L1 penalty on their strengths drives them to zero so
  that they can be cut, leaving a single-task primary network.

Link strengths are ``sigmoid(logit)`` for searched links and fixed at 1 for
Aux-G's links. In evaluation mode a2p links are cut (strength 0), which is the
network that ``primary_network`` exports.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ...backbones import Branch
from ...config.schema import MethodConfig
from ...tasks import Task
from ..base import MultiTaskModel
from .fusion import Fusion, FusionNorm
from .penalty import a2p_penalty, penalty_weight
from .search_space import links_of


def _logit(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"initial link strength must be in (0, 1), got {p}")
    return math.log(p / (1.0 - p))


class LinkSet(nn.Module):
    """The links of one direction between the primary and one auxiliary branch.

    Holds the link list, the strengths (learnable logits when ``searchable``, a
    fixed 1 otherwise) and, unless ``with_fusions`` is False, one fusion op per
    target cell.
    """

    def __init__(
        self,
        matrix: Tensor,
        target: Branch,
        source: Branch,
        searchable: bool,
        init_strength: float,
        norm: FusionNorm,
        with_fusions: bool = True,
        fusion_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.links = links_of(matrix)
        if not self.links:
            raise ValueError("a link set needs at least one link")
        self.searchable = searchable
        if searchable:
            self.logits = nn.Parameter(torch.full((len(self.links),), _logit(init_strength)))
        else:
            self.register_buffer("fixed", torch.ones(len(self.links)), persistent=False)
        self.fusions = nn.ModuleDict()
        for i in sorted({t for t, _ in self.links}) if with_fusions else ():
            sources = [source.cell_channels[j] for t, j in self.links if t == i]
            self.fusions[str(i)] = Fusion(target.cell_channels[i], sources, target.feature_format, norm, fusion_init)

    def strengths(self) -> Tensor:
        """One strength in [0, 1] per link."""
        return torch.sigmoid(self.logits) if self.searchable else self.fixed

    def incoming(self, cell: int) -> list[tuple[int, int]]:
        """``(link index, source cell)`` of every link into target ``cell``."""
        return [(k, j) for k, (t, j) in enumerate(self.links) if t == cell]


class LinkedBranches(MultiTaskModel):
    """Primary and auxiliary branches with p2a (and optionally a2p) links.

    Args:
        branches: one branch per task, primary first; all with the same cell layout.
        p2a: link matrix for primary -> each auxiliary branch.
        a2p: link matrix for each auxiliary -> primary branch, or None (Aux-G, "gradient + NAS").
        search_p2a: p2a strengths are learnable (Aux-NAS) or fixed at 1 (Aux-G).
        p2a_init, a2p_init: initial strengths of searched links.
        norm: fusion op post-processing, "none" or "bn_relu".
        fusion_init: the fusion ops' initial weight on the sources (``Fusion``; 0: they start as the branches).
    """

    record_key = "link_strengths"

    def __init__(
        self,
        tasks: dict[str, Task],
        primary: str,
        branches: dict[str, Branch],
        p2a: Tensor,
        a2p: Tensor | None,
        search_p2a: bool,
        p2a_init: float = 0.5,
        a2p_init: float = 0.001,
        norm: FusionNorm = "none",
        penalty_max: float = 1000.0,
        penalty_start: float = 0.5,
        penalty_end: float = 0.8,
        penalty_reduction: Literal["mean", "sum"] = "mean",
        fusion_init: float = 0.0,
    ) -> None:
        super().__init__(tasks, primary)
        if len(tasks) < 2:
            raise ValueError("linked branches need at least one auxiliary task")
        main = branches[primary]
        if norm == "bn_relu" and main.feature_format == "tokens":
            raise ValueError("fusion norm bn_relu is for feature maps, not tokens: it would put a ReLU on the "
                             "residual stream after every fused block")
        for name, branch in branches.items():
            if branch.stage_depths != main.stage_depths:
                raise ValueError(f"branch {name!r} has stages {branch.stage_depths}, primary has {main.stage_depths}")
        self.branches = nn.ModuleDict(branches)
        self.aux_names = [name for name in tasks if name != primary]
        self.norm = norm
        self.penalty = (penalty_max, penalty_start, penalty_end, penalty_reduction)
        self.p2a = nn.ModuleDict({
            a: LinkSet(p2a, branches[a], main, search_p2a, p2a_init, norm, fusion_init=fusion_init)
            for a in self.aux_names
        })
        self.a2p = nn.ModuleDict(
            {a: LinkSet(a2p, main, branches[a], True, a2p_init, norm, with_fusions=False) for a in self.aux_names}
            if a2p is not None else {}
        )
        # one fusion op per primary cell over the a2p links of every auxiliary branch, so that the export
        # (and the norm/activation it keeps in "bn_relu" mode) does not depend on the number of auxiliaries
        targets = sorted({t for links in self.a2p.values() for t, _ in links.links})
        self.primary_fusions = nn.ModuleDict()
        for i in targets:
            sources = [branches[a].cell_channels[j] for a in self.a2p for _, j in self.a2p[a].incoming(i)]
            self.primary_fusions[str(i)] = Fusion(main.cell_channels[i], sources, main.feature_format, norm,
                                                  fusion_init)

    @property
    def primary_branch(self) -> Branch:
        return self.branches[self.primary]

    def architecture_parameters(self) -> list[nn.Parameter]:
        return [links.logits for links in (*self.p2a.values(), *self.a2p.values()) if links.searchable]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The primary branch's stem, cells and a2p fusion ops: every task's loss reaches them (auxiliary
        losses through the p2a links, which read the primary cells downstream of each fusion op)."""
        branch = self.primary_branch
        return [*branch.stem.parameters(), *branch.cells.parameters(), *self.primary_fusions.parameters()]

    def a2p_projections(self) -> list[nn.Parameter]:
        """The primary fusion ops' 1x1 projections: every source of those ops is an a2p link."""
        return [fusion.proj.weight for fusion in self.primary_fusions.values()]

    def p2a_projections(self) -> list[nn.Parameter]:
        """The auxiliary branches' fusion ops' 1x1 projections: every source of those ops is a p2a link."""
        return [fusion.proj.weight for links in self.p2a.values() for fusion in links.fusions.values()]

    def fusion_projections(self) -> list[nn.Parameter]:
        """Every fusion op's 1x1 projection: the auxiliary branches' (p2a) and the primary's (a2p)."""
        return [*self.p2a_projections(), *self.a2p_projections()]

    def optimizer_groups(self, lr: float, weight_decay: float, method: MethodConfig) -> list[dict[str, Any]]:
        """Grouped by learning rate and weight decay: the fusion projections (``fusion_projections``) train at
        ``method.fusion_lr_factor`` times ``lr`` (the network's schedule applies to every group alike); with
        ``method.a2p_weight_decay`` the a2p projections decay by ``weight_decay`` plus that."""
        fusion = {id(p) for p in self.fusion_projections()} if method.fusion_lr_factor != 1 else set()
        a2p = {id(p) for p in self.a2p_projections()} if method.a2p_weight_decay else set()
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for p in self.network_parameters():
            p_lr = lr * (method.fusion_lr_factor if id(p) in fusion else 1.0)
            p_decay = weight_decay + (method.a2p_weight_decay if id(p) in a2p else 0.0)
            groups.setdefault((p_lr, p_decay), []).append(p)
        return [{"params": params, "lr": g_lr, "weight_decay": g_decay} for (g_lr, g_decay), params in groups.items()]

    def record_names(self) -> dict[str, list[list[int]]]:
        """``link_names`` as lists."""
        return {k: [list(p) for p in v] for k, v in self.link_names().items()}

    def recorded_values(self) -> dict[str, list[float]]:
        """``link_strengths``."""
        return self.link_strengths()

    def evaluation_variants(self) -> dict[str, dict[str, Any]]:
        """With a2p links: the train-time network with them kept (``a2p_kept``), beside the deployed one."""
        return {"a2p_kept": {"cut_a2p": False}} if self.a2p else {}

    def monitored_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The p2a and the a2p fusion projections: how far the zero-initialised ``W`` of the fusion ops has grown."""
        return {"p2a": self.p2a_projections(), "a2p": self.a2p_projections()}

    def last_shared_layer(self) -> nn.Parameter:
        return self.primary_branch.last_layer_weight()

    def link_strengths(self) -> dict[str, list[float]]:
        """``"p2a/<aux>"`` / ``"a2p/<aux>"`` -> strength of each link, in the order of ``link_names``."""
        out = {f"p2a/{a}": links.strengths().tolist() for a, links in self.p2a.items()}
        out.update({f"a2p/{a}": links.strengths().tolist() for a, links in self.a2p.items()})
        return out

    def link_names(self) -> dict[str, list[tuple[int, int]]]:
        """``(target cell, source cell)`` of each link, keyed like ``link_strengths``."""
        out = {f"p2a/{a}": links.links for a, links in self.p2a.items()}
        out.update({f"a2p/{a}": links.links for a, links in self.a2p.items()})
        return out

    def architecture_penalty(self, progress: float) -> Tensor | None:
        if not self.a2p:
            return None
        strengths = torch.cat([links.strengths() for links in self.a2p.values()])
        return a2p_penalty(strengths, progress, *self.penalty)

    def penalty_weight(self, progress: float) -> float | None:
        if not self.a2p:
            return None
        lambda_max, start, end, _ = self.penalty
        return penalty_weight(progress, lambda_max, start, end)

    def forward(self, x: Tensor, cut_a2p: bool | None = None) -> dict[str, Tensor]:
        """Predictions of every task.

        ``cut_a2p`` defaults to ``not self.training``: evaluation sees the deployed primary network.
        """
        if cut_a2p is None:
            cut_a2p = not self.training
        names = [self.primary, *self.aux_names]
        hidden = {name: self.branches[name].stem(x) for name in names}
        raw: dict[str, list[Tensor]] = {name: [] for name in names}
        fused: dict[str, list[Tensor]] = {name: [] for name in names}
        p2a = {a: links.strengths() for a, links in self.p2a.items()}
        a2p = {a: links.strengths() for a, links in self.a2p.items()}
        if cut_a2p:
            a2p = {a: torch.zeros_like(s) for a, s in a2p.items()}
        for i in range(len(self.primary_branch.cells)):
            for name in names:
                raw[name].append(self.branches[name].cells[i](hidden[name]))
            out = raw[self.primary][i]
            if str(i) in self.primary_fusions:
                incoming = [(a, k, j) for a in self.a2p for k, j in self.a2p[a].incoming(i)]
                out = self.primary_fusions[str(i)](
                    out, [raw[a][j] for a, _, j in incoming], torch.stack([a2p[a][k] for a, k, _ in incoming])
                )
            fused[self.primary].append(out)
            for a in self.aux_names:
                links, out = self.p2a[a], raw[a][i]
                if str(i) in links.fusions:
                    incoming = links.incoming(i)
                    out = links.fusions[str(i)](
                        out, [raw[self.primary][j] for _, j in incoming], p2a[a][[k for k, _ in incoming]]
                    )
                fused[a].append(out)
            hidden = {name: fused[name][i] for name in names}
        size = (x.shape[-2], x.shape[-1])
        return {name: self.branches[name].decode(fused[name], size) for name in names}

    def primary_network(self) -> Branch:
        """The primary branch alone; in ``bn_relu`` mode the cells with a2p fusion keep its norm + ReLU."""
        branch = copy.deepcopy(self.primary_branch)
        if self.norm == "bn_relu":
            for key, fusion in self.primary_fusions.items():
                i = int(key)
                branch.cells[i] = nn.Sequential(branch.cells[i], copy.deepcopy(fusion.post))
        return branch

    def fused_primary_cells(self) -> list[int]:
        """Primary cells followed by a fusion op (whose norm/activation the export keeps in bn_relu mode)."""
        return sorted(int(k) for k in self.primary_fusions)

    def a2p_links(self) -> list[dict[str, Any]]:
        return [{"aux": aux, "primary_cell": target, "aux_cell": source, "strength": value}
                for aux, links in self.a2p.items()
                for (target, source), value in zip(links.links, links.strengths().tolist())]

    def export_extras(self) -> dict[str, list[int]]:
        """The export cuts the a2p links and deletes the auxiliary branches, the p2a links and every fusion op; in
        ``bn_relu`` mode it keeps the norm + ReLU after each fused primary cell."""
        kept = self.fused_primary_cells() if self.norm == "bn_relu" else []
        return {"fusion_post_cells": kept, "skipped_cells": [], "shortcut_cells": []}
