"""A PNG grid of synthetic images and all their labels, to see what the tasks look like."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..storage import atomic_write  # noqa: E402
from .synthetic import IGNORE_INDEX, OBJECT_CLASSES, SCENE_CLASSES, SEG_CLASSES, SyntheticScenes  # noqa: E402


def preview_path(path: str | os.PathLike) -> Path:
    """Where ``save_preview`` writes for ``path``: ``path/preview.png`` for a folder, ``.png`` appended to a
    name without it."""
    path = Path(path)
    if path.is_dir():
        return path / "preview.png"
    return path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png")


def _class_colours(labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """An RGB picture of class labels; ignored pixels white."""
    picture = np.ones(labels.shape + (3,))
    valid = labels != IGNORE_INDEX
    picture[valid] = colours[labels[valid]]
    return picture


def save_preview(dataset: SyntheticScenes, path: str | os.PathLike, num_images: int = 8) -> Path:
    """Write one column per image: RGB, segmentation, layout, depth, normals, disparity; titles give object and
    scene.

    Returns the file written (see ``preview_path``)."""
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}")
    num_images = min(num_images, len(dataset))
    rows = ("RGB", "segmentation", "layout", "depth", "normals", "disparity")
    fig, axes = plt.subplots(len(rows), num_images, figsize=(1.9 * num_images, 1.9 * len(rows)), squeeze=False)
    colours = plt.get_cmap("tab10")(np.arange(len(SEG_CLASSES)))[:, :3]
    for c in range(num_images):
        j = int(dataset.indices[c])
        a = dataset.arrays
        seg_rgb, layout_rgb = (_class_colours(a[key][j], colours) for key in ("seg", "layout"))
        normal = a["normal"][j]
        normal_rgb = np.where((normal != 0).any(-1, keepdims=True), (normal + 1) / 2, 1.0)
        panels = (a["image"][j], seg_rgb, layout_rgb, a["depth"][j], normal_rgb, a["disparity"][j])
        for r, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap="magma" if panel.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(rows[r], fontsize=8)
        axes[0, c].set_title(f"{OBJECT_CLASSES[a['object'][j]]}\n{SCENE_CLASSES[a['scene'][j]]}", fontsize=8)
    fig.tight_layout()
    path = preview_path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
    return path
