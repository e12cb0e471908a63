"""The rows of a comparison: a label and the overrides that make it. Plain strings, no torch, so that the command
line can check them at once.

A method row is ``METHOD`` or ``METHOD+WEIGHTING`` (``aux_nas``, ``aux_head+gcs``); ``single`` (single-task on the
primary) is the baseline and is always a row. Controls add, for every method with auxiliary tasks, the same method
with the auxiliary targets randomised (``<row>-random_aux``: the negative control, the same extra updates without
the auxiliary information), and where primary labels are held out, the ceiling (``CEILING``): single-task with
every primary label the data has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

#: placeholder for the config's first auxiliary task in a row's overrides
AUX = "{aux}"
#: a row's overrides may name the run directory of an earlier row of the same seed: ``{run:<row>}``
RUN = "{run:%s}"
#: the ceiling of a comparison whose primary is partially labelled: single-task with every primary label the data
#: has and as many updates as the floor, single-task on the labelled fraction (``single``)
CEILING = "single-all_labels"
#: the suffix of a row's negative control: its auxiliary targets replaced by random ones
RANDOM_AUX = "-random_aux"
#: single-task's overrides: the primary alone
SINGLE = ("method.name=single", "tasks.aux=[]")


def method_overrides(row: str) -> tuple[str, ...]:
    """The overrides of a method row ``METHOD[+WEIGHTING]``."""
    method, _, weighting = row.partition("+")
    if method == "single":
        return SINGLE + ((f"weighting.name={weighting}",) if weighting else ())
    return (f"method.name={method}",) + ((f"weighting.name={weighting}",) if weighting else ())


def comparison_rows(
    methods: Sequence[str], aux: Sequence[str], controls: bool = False, ceiling: tuple[str, ...] | None = None
) -> dict[str, tuple[str, ...]]:
    """Label -> overrides of every row: ``single``, then each of ``methods`` (``METHOD[+WEIGHTING]``), then with
    ``controls`` each non-single row with its auxiliary tasks ``aux`` on random targets; ``ceiling``: the
    overrides that give the primary every label back (the ceiling row's, after single-task's), or None."""
    rows: dict[str, tuple[str, ...]] = {"single": SINGLE}
    if ceiling is not None:
        rows[CEILING] = SINGLE + ceiling
    for row in methods:
        rows[row] = method_overrides(row)
    if controls and aux:
        for row in methods:
            if not row.startswith("single"):
                rows[row + RANDOM_AUX] = (*method_overrides(row), f"data.random_targets=[{', '.join(aux)}]")
    return rows


def check_methods(methods: Sequence[str], method_names: Sequence[str], weighting_names: Sequence[str]) -> None:
    """Refuse (``ValueError``, one line) a method row that names an unknown method or weighting, or a repeated one,
    and rows of single-task only: single-task is the baseline, so they would compare nothing with it."""
    for row in methods:
        method, plus, weighting = row.partition("+")
        if method not in method_names:
            raise ValueError(f"--methods: unknown method {method!r} in {row!r}; valid: {', '.join(method_names)}")
        if plus and weighting not in weighting_names:
            raise ValueError(f"--methods: unknown weighting {weighting!r} in {row!r}; valid: "
                             f"{', '.join(weighting_names)}")
    repeated = sorted({row for row in methods if list(methods).count(row) > 1})
    if repeated:
        raise ValueError(f"--methods: {', '.join(repeated)} given twice")
    if all(row.partition("+")[0] == "single" for row in methods):
        others = ", ".join(name for name in method_names if name != "single")
        raise ValueError(f"--methods: single-task is always the baseline row; name at least one method with "
                         f"auxiliary tasks ({others})")


def ceiling_fractions(fractions: Mapping[str, float], primary: str) -> str:
    """The ``data.labelled_fraction`` override that keeps ``fractions`` of the other tasks and every primary label."""
    kept = {task: f for task, f in fractions.items() if task != primary}
    return "data.labelled_fraction={" + ", ".join(f"{task}: {f}" for task, f in kept.items()) + "}"


def row_dependencies(row: str, rows: Mapping[str, Sequence[str]]) -> list[str]:
    """The rows (of ``rows``: label -> overrides) whose runs of the same seed ``row`` starts from."""
    return [other for other in rows if any(RUN % other in o for o in rows[row])]


def row_overrides(row: str, rows: Mapping[str, Sequence[str]], aux: str, runs_dir: Path | None = None,
                  seed: int = 0) -> list[str]:
    """The overrides of ``row`` with ``aux`` and the run directories it names (``runs_dir/<row>/seed<seed>``)
    filled in."""
    overrides = [o.replace(AUX, aux) for o in rows[row]]
    for dependency in row_dependencies(row, rows):
        overrides = [o.replace(RUN % dependency, str(Path(runs_dir or ".") / dependency / f"seed{seed}"))
                     for o in overrides]
    return overrides


def needed_rows(wanted: Sequence[str], rows: Mapping[str, Sequence[str]]) -> list[str]:
    """``wanted`` and every row they start from, in the order of ``rows``."""
    return [r for r in rows if r in wanted or any(r in row_dependencies(x, rows) for x in wanted)]
