"""``auxnas data check ROOT``: read every file of a folder dataset (``data.name: folder``), report what it holds
and every problem found, with the file it concerns."""

from __future__ import annotations

import os
import textwrap
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..tasks import BUILTIN_KINDS
from ..tasks.regression import valid_values
from .folder_layout import DEFAULT_SCALES, SPLITS, TaskSpec, read_spec, scan_split
from .folder_read import check_label_size, read_image, read_label, size_mismatch
from .synthetic import IGNORE_INDEX

__all__ = ["check_folder", "format_report"]


class _LabelStats:
    """What the labels of one task in one split hold (see ``check_folder``)."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.counts = np.zeros(spec.classes or 0, dtype=np.int64)
        self.ignored = self.values = self.valid = 0
        self.low, self.high = float("inf"), float("-inf")

    def add(self, label: torch.Tensor) -> None:
        kind = self.spec.kind
        if kind in ("segmentation", "classification"):
            values = label.reshape(-1).numpy()
            keep = values != IGNORE_INDEX if kind == "segmentation" else np.ones(values.shape, dtype=bool)
            self.ignored += int((~keep).sum())
            self.counts += np.bincount(values[keep], minlength=len(self.counts))
            return
        if kind == "multilabel":
            self.counts += label.numpy().astype(np.int64)
            return
        if kind == "image_regression":
            valid = torch.ones_like(label, dtype=torch.bool)
        elif kind == "dense_regression":
            valid = valid_values(label, self.spec.declaration["invalid"])
        else:  # depth, disparity, normals: a zero vector is invalid
            valid = label.abs().sum(dim=0) > 0
        self.values += valid.numel()
        self.valid += int(valid.sum())
        if kind != "normals" and bool(valid.any()):
            values = label[valid] if valid.shape == label.shape else label[0][valid]
            self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def result(self) -> dict[str, Any]:
        kind = self.spec.kind
        if kind == "segmentation":
            return {"pixels_per_class": self.counts.tolist(), "ignored_pixels": self.ignored}
        if kind in ("classification", "multilabel"):
            return {"images_per_class": self.counts.tolist()}
        found = self.low <= self.high
        limits = {"min": self.low if found else None, "max": self.high if found else None}
        if kind == "image_regression":
            return limits
        out: dict[str, Any] = {"valid_fraction": self.valid / self.values if self.values else None}
        return out if kind == "normals" else {**out, **limits}


def check_folder(root: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Read every image and label file of the folder dataset at ``root`` as the reader would; report what it holds.

    Returns a JSON-ready dict:

    * ``root``; ``size``: the (H, W) every image gets, and ``size_from``: ``"dataset.yaml"`` (every image and
      label is resized to it) or ``"first training image"`` (every image must have it);
    * ``tasks``: task -> its settings in dataset.yaml (``folder``, ``kind`` unless the name implies it, the kind's
      keys such as ``classes``, ``channels``, ``invalid`` and ``loss`` when given, ``ignore``, ``encoding``,
      ``scale`` (PNG labels only));
    * ``splits``: split -> ``{"images": n, "tasks": {task: {"labels": n, "unlabelled": n, ...}}}`` for ``train``,
      ``test`` and (when its folder exists) ``val``, where ``...`` is, over every label of the split, by the task's
      kind: segmentation ``pixels_per_class`` (a list over the classes) and ``ignored_pixels``; classification and
      multi-label ``images_per_class``; depth, disparity and dense regression ``valid_fraction`` of the values and
      the ``min`` / ``max`` of the valid ones; normals ``valid_fraction``; image regression ``min`` / ``max``;
    * ``problems``: every problem found, one line each, starting with the file or folder it concerns: the layout
      (missing folders, unknown extensions, two files for one image, labels without an image), unreadable files,
      wrong shapes or sizes, labels out of range, and tasks without any label in a split.

    Raises ``FileNotFoundError`` / ``ValueError`` when there is nothing to check: no ``root`` folder, or a missing
    or invalid ``dataset.yaml``. ``progress`` shows a bar over the files.
    """
    spec = read_spec(root)
    scans = {split: scan_split(spec, split) for split in SPLITS if split != "val" or (spec.root / split).is_dir()}
    problems = [str(p) for found in scans.values() for p in found.problems]
    size, size_from = spec.size, "dataset.yaml" if spec.size else "first training image"
    splits: dict[str, Any] = {}
    total = sum(len(files) for found in scans.values() for files in found.files.values())
    with tqdm(total=total, desc="checking files", unit="file", disable=not progress) as bar:
        for split, found in scans.items():
            native: dict[str, tuple[int, int]] = {}
            for image_id in found.ids:
                path = found.files["image"][image_id]
                try:
                    shape = tuple(read_image(path).shape[-2:])
                except (OSError, ValueError) as err:
                    problems.append(str(err))
                else:
                    native[image_id] = shape
                    if size is None:
                        size = shape
                    elif spec.size is None and shape != size:
                        problems.append(str(size_mismatch(path, shape, size)))
                bar.update()
            report: dict[str, Any] = {"images": len(found.ids), "tasks": {}}
            for task, task_spec in spec.tasks.items():
                stats, files = _LabelStats(task_spec), found.files[task]
                for image_id, path in files.items():
                    try:
                        label = read_label(task_spec, path)
                        if image_id in native:
                            check_label_size(path, label, found.files["image"][image_id], native[image_id])
                    except (OSError, ValueError) as err:
                        problems.append(str(err))
                    else:
                        stats.add(label)
                    bar.update()
                labels = sum(image_id in files for image_id in found.ids)
                folder = found.split_dir / task_spec.folder
                if labels == 0 and folder.is_dir() and found.ids:
                    problems.append(f"{folder}: no {task} labels (every {split} image is unlabelled for {task})")
                report["tasks"][task] = {"labels": labels, "unlabelled": len(found.ids) - labels, **stats.result()}
            splits[split] = report
    return {
        "root": str(spec.root), "size": list(size) if size else None, "size_from": size_from,
        "tasks": {name: _settings(t, any(p.suffix.lower() == ".png" for found in scans.values()
                                         for p in found.files[name].values()))
                  for name, t in spec.tasks.items()}, "splits": splits, "problems": problems,
    }


def _settings(spec: TaskSpec, png: bool) -> dict[str, Any]:
    """The dataset.yaml settings that apply to ``spec``'s task (its kind only where its name does not imply it;
    ``scale`` only where its labels are PNG files (``png``): a .npy file holds the values themselves)."""
    declared = {k: v for k, v in spec.declaration.items() if k != "kind" or spec.name not in BUILTIN_KINDS}
    out: dict[str, Any] = {"folder": spec.folder, **declared}
    if spec.kind == "segmentation":
        out["ignore"] = spec.ignore
    if spec.kind == "normals":
        out["encoding"] = spec.encoding
    if spec.kind in DEFAULT_SCALES and png:
        out["scale"] = spec.scale
    return out


def _shares(counts: list[int], total: int) -> str:
    return ", ".join(f"{c} {100 * n / total:.1f}%" for c, n in enumerate(counts)) if total else "none"


def format_report(report: dict[str, Any]) -> str:
    """``check_folder``'s report as the text ``auxnas data check`` prints."""
    def settings(values: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())

    tasks = ", ".join(f"{name} ({settings(values)})" for name, values in report["tasks"].items())
    lines = [f"{report['root']}: {tasks}"]
    if report["size"]:
        height, width = report["size"]
        how = "resized to" if report["size_from"] == "dataset.yaml" else "every image must be"
        lines.append(f"image size: {how} {height}x{width} ({report['size_from']})")
    for split in ("train", "val", "test"):
        if split not in report["splits"]:
            lines.append(f"{split}: no folder (the validation images are carved from train)")
            continue
        data = report["splits"][split]
        lines.append(f"{split}: {data['images']} images")
        for task, stats in data["tasks"].items():
            head = f"  {task:<9} {str(stats['labels']) + '/' + str(data['images']):>11} labelled"
            if "pixels_per_class" in stats:
                total = sum(stats["pixels_per_class"]) + stats["ignored_pixels"]
                detail = (f"pixels per class: {_shares(stats['pixels_per_class'], total)}; ignored "
                          f"{100 * stats['ignored_pixels'] / total if total else 0:.1f}%")
            elif "images_per_class" in stats:
                detail = f"images per class: {', '.join(f'{c} {n}' for c, n in enumerate(stats['images_per_class']))}"
            else:
                parts = []
                if "valid_fraction" in stats:
                    valid = stats["valid_fraction"]
                    parts.append("no pixels read" if valid is None else f"valid pixels {100 * valid:.1f}%")
                if stats.get("min") is not None:
                    parts.append(f"values {stats['min']:.4g} .. {stats['max']:.4g}")
                detail = ", ".join(parts) or "no values read"
            indent = " " * (len(head) + 2)
            lines.append(textwrap.fill(detail, 118, initial_indent=f"{head}  ", subsequent_indent=indent))
    problems = report["problems"]
    lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" + (":" if problems else " found"))
    lines.extend(f"  {problem}" for problem in problems)
    return "\n".join(lines)

