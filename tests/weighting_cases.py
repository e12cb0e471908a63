"""Shared cases of the weighting tests: a primary ``p`` and an auxiliary ``a`` whose losses are linear in a shared
vector ``w`` (``L_t = w . g_t``), so the per-task gradients on the shared parameters are exactly the chosen ``g_t``
and expected ``.grad`` values are exact."""

import torch

from auxnas.weighting import build_weighting

TASKS = ["p", "a"]
BASE = {"p": 1.0, "a": 1.0}
GRADIENT_METHODS = ["pcgrad", "pcgrad_aux", "cagrad", "gcs"]
#: options that make a method non-degenerate with one auxiliary task and start every weight at 1
TWO_TASK_OPTIONS = {"dwa": {"fix_primary": False}, "auto_lambda": {"init": 1.0}}


def linear_losses(gp, ga, own=(0.0, 0.0)):
    """Losses whose gradients on the shared vector are exactly ``gp`` and ``ga``; ``own`` only in p's loss."""
    shared = torch.nn.Parameter(torch.zeros(len(gp)))
    private = torch.nn.Parameter(torch.zeros(len(own)))
    losses = {
        "p": shared @ torch.tensor(gp) + private @ torch.tensor(own),
        "a": shared @ torch.tensor(ga),
    }
    return shared, private, losses


def run(name, gp, ga, own=(0.0, 0.0), base=BASE, **options):
    """``.grad`` of the shared vector and of p's private parameters after one ``backward``."""
    shared, private, losses = linear_losses(gp, ga, own)
    build_weighting(name, TASKS, "p", **options).backward(losses, [shared], base)
    return shared.grad, private.grad
