"""Write the built-in synthetic scenes as a folder dataset (docs/datasets.md, "Your own data: the folder layout"),
with the segmentation labels of part of the training images left out, as a team's own data often is: the example
of docs/compare.md, which the packaged ``folder`` config compares. Besides segmentation and normals it declares a
task of its own, ``edges`` (a dense regression: 1 where a pixel's 4-neighbourhood crosses a segmentation boundary,
else 0), as a team would declare a label auxnas has no name for.

    python -m auxnas.examples.synthetic_folder data/my_scenes --num-train 200 --num-test 60 --missing 0.8
    auxnas compare folder data.root=data/my_scenes tasks.primary=seg "tasks.aux=[edges]" data.image_size=32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from auxnas.data.synthetic import SEG_CLASSES, SyntheticScenes


def edge_map(seg: np.ndarray) -> np.ndarray:
    """1.0 where a pixel's right or lower neighbour has another segmentation class (or, either way, the same pixel
    of the one before), else 0.0: an H x W float32 map."""
    edges = np.zeros(seg.shape, dtype=bool)
    right, down = seg[:, 1:] != seg[:, :-1], seg[1:, :] != seg[:-1, :]
    edges[:, 1:] |= right
    edges[:, :-1] |= right
    edges[1:, :] |= down
    edges[:-1, :] |= down
    return edges.astype(np.float32)


def write_folder(root: Path, num_train: int, num_test: int, image_size: int, missing: float, seed: int) -> None:
    """``root``/dataset.yaml and train/, test/ with rgb/ (PNG), seg/ (PNG; none for a ``missing`` share of the
    training images, chosen with ``seed``), normal/ (unit vectors, .npy) and edges/ (``edge_map``, .npy; every
    image)."""
    root.mkdir(parents=True, exist_ok=True)
    spec = {"tasks": {"seg": {"classes": len(SEG_CLASSES)}, "normal": {"encoding": "unit"},
                      "edges": {"kind": "dense_regression", "channels": 1, "loss": "l1", "invalid": "none"}}}
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("test", num_test)):
        scenes = SyntheticScenes(split, count, image_size, seed, progress=False)
        share = missing if split == "train" else 0.0
        unlabelled = set(rng.choice(count, round(share * count), replace=False).tolist())
        for folder in ("rgb", "seg", "normal", "edges"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            Image.fromarray(scenes.arrays["image"][j]).save(root / split / "rgb" / f"{j}.png")
            np.save(root / split / "normal" / f"{j}.npy", scenes.arrays["normal"][j].astype(np.float32))
            np.save(root / split / "edges" / f"{j}.npy", edge_map(scenes.arrays["seg"][j]))
            if j not in unlabelled:
                Image.fromarray(scenes.arrays["seg"][j].astype(np.uint8)).save(root / split / "seg" / f"{j}.png")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m auxnas.examples.synthetic_folder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--missing", type=float, default=0.8, help="share of training images without a seg label")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_folder(args.root, args.num_train, args.num_test, args.image_size, args.missing, args.seed)
    print(f"wrote {args.root}; check it, then compare:\n  auxnas data check {args.root}\n"
          f"  auxnas compare folder data.root={args.root} tasks.primary=seg \"tasks.aux=[edges]\" "
          f"data.image_size={args.image_size}")


if __name__ == "__main__":
    main()
