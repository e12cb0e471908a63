"""Aux-NAS (Gao et al., ICLR 2024) and Aux-G, which shares its linked model with fixed p2a links only.

* ``search_space``: the connectivity matrices (which cells may be linked)
* ``fusion``: the residual fusion op at a linked cell
* ``penalty``: the ramped L1 regulariser on the a2p strengths
* ``model``: ``LinkedBranches``, one branch per task joined by the links, and what its export keeps and cuts
"""

from __future__ import annotations

from collections.abc import Callable

from ...backbones import Branch
from ...config import ExperimentConfig
from ...tasks import Task
from ..base import SEARCH_OPTIONS
from .fusion import Fusion, FusionNorm, FusionPost
from .model import LinkedBranches, LinkSet
from .penalty import a2p_penalty, penalty_weight
from .search_space import connectivity_matrix, links_of

__all__ = ["OPTIONS", "Fusion", "FusionNorm", "FusionPost", "LinkSet", "LinkedBranches", "a2p_penalty", "build",
           "connectivity_matrix", "links_of", "penalty_weight"]

_FUSION_OPTIONS = ("granularity", "window", "fusion_norm", "fusion_init", "fusion_lr_factor")
#: method.name -> the ``method.*`` options it takes: Aux-G's fixed links take the fusion options only
OPTIONS: dict[str, tuple[str, ...]] = {
    "aux_g": _FUSION_OPTIONS,
    "aux_nas": (*_FUSION_OPTIONS, "search", "p2a_init", "a2p_init", "penalty_max", "penalty_start", "penalty_end",
                "penalty_reduction", "a2p_weight_decay", *SEARCH_OPTIONS),
}


def build(cfg: ExperimentConfig, tasks: dict[str, Task], branch: Callable[[Task], Branch]) -> LinkedBranches:
    """Aux-NAS (``aux_nas``: searched p2a and, with ``method.search: both``, a2p links) or Aux-G (``aux_g``: fixed
    p2a links); ``branch(task)`` builds a task's branch (initialised as ``init.*`` asks)."""
    m, primary = cfg.method, cfg.tasks.primary
    branches = {name: branch(task) for name, task in tasks.items()}
    links = connectivity_matrix(branches[primary].stage_depths, m.granularity, m.window)
    searched = m.name == "aux_nas"
    return LinkedBranches(
        tasks, primary, branches, p2a=links, a2p=links if searched and m.search == "both" else None,
        search_p2a=searched, p2a_init=m.p2a_init, a2p_init=m.a2p_init, norm=m.fusion_norm,
        penalty_max=m.penalty_max, penalty_start=m.penalty_start, penalty_end=m.penalty_end,
        penalty_reduction=m.penalty_reduction, fusion_init=m.fusion_init,
    )
