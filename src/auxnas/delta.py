"""Δm, the relative improvement of a result over a baseline, under one declared convention.

The literature uses incompatible definitions of Δm: one metric per task with positive = better
(MTAN, Auto-Lambda); the mean over all metrics with negative = better (Nash-MTL, CAGrad); a mean per
task first and then over tasks (LibMTL). Numbers from different conventions cannot be compared.

This library uses exactly one::

    Δm = mean over the chosen (task, metric) pairs of  s * (M - M_base) / M_base * 100

with ``s = +1`` when higher is better and ``s = -1`` otherwise, so **positive = better** and every
chosen metric weighs the same (a task with more metrics weighs more). ``task_delta_metrics`` gives the
default metrics of a task: segmentation ``miou, pixel_acc``; normals ``mean_angle, median_angle,
within_11.25, within_22.5, within_30``; depth / disparity ``abs_err, rel_err``; classification
``top1, top5``; dense and image regression ``abs_err, rmse``; multi-label ``map, f1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .tasks.base import Task


def delta_m(
    result: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    metrics: Sequence[tuple[str, str]],
    higher_is_better: Mapping[tuple[str, str], bool],
) -> float:
    """Mean signed relative change (percent) of ``result`` over ``baseline`` on ``metrics``; positive = better.

    ``result`` and ``baseline`` map task -> metric -> value; ``metrics`` lists the ``(task, metric)`` pairs
    to average; ``higher_is_better`` gives each pair's direction.
    """
    if not metrics:
        raise ValueError("delta_m: no (task, metric) pair given")
    changes = []
    for task, metric in metrics:
        for label, values in (("result", result), ("baseline", baseline)):
            if task not in values:
                raise ValueError(f"delta_m: {label} has no task {task!r}")
            if metric not in values[task]:
                raise ValueError(f"delta_m: {label} has no metric {metric!r} for task {task!r}")
        if (task, metric) not in higher_is_better:
            raise ValueError(f"delta_m: higher_is_better has no entry for ({task!r}, {metric!r})")
        base = baseline[task][metric]
        if base == 0:
            raise ValueError(f"delta_m: baseline {task}/{metric} is 0; the relative change is undefined")
        sign = 1.0 if higher_is_better[(task, metric)] else -1.0
        changes.append(sign * (result[task][metric] - base) / base * 100)
    return sum(changes) / len(changes)


def task_delta_metrics(task: Task) -> list[tuple[str, str]]:
    """The default ``(task name, metric)`` pairs of ``task`` for Δm.

    Built-in tasks declare them in ``delta_metrics``; any other task uses every metric it reports.
    """
    names = getattr(task, "delta_metrics", tuple(task.higher_is_better))
    return [(task.name, metric) for metric in names]
