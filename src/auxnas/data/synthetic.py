"""The built-in default dataset: the procedural indoor scenes of ``auxnas.data.synthetic_render`` (their labels,
camera and determinism are described there), generated once per split, seed, size and count and cached on disk.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..storage import atomic_write, unwritable
from .base import IndexedImages
from .synthetic_render import (
    DISPARITY_SCALE,
    IGNORE_INDEX,
    LAYOUT_CLASSES,
    OBJECT_CLASSES,
    SCENE_CLASSES,
    SEG_CLASSES,
    SPLITS,
    check_args,
    generate_scenes,
    intrinsics,
    layout_labels,
)
from .transforms import hflip, normalise

__all__ = [
    "DISPARITY_SCALE", "FORMAT_VERSION", "IGNORE_INDEX", "LAYOUT_CLASSES", "OBJECT_CLASSES", "SCENE_CLASSES",
    "SEG_CLASSES", "SPLITS", "SyntheticScenes", "cache_problem", "default_cache_dir", "generate_scenes", "intrinsics",
    "layout_labels",
]

#: version of the cache files' content, stored in each file as ``format_version`` and in its name
FORMAT_VERSION = 2


def default_cache_dir() -> Path:
    """``$AUXNAS_CACHE`` or ``~/.cache/auxnas``."""
    return Path(os.environ.get("AUXNAS_CACHE", Path.home() / ".cache" / "auxnas"))


def _cache_folder_error(folder: Path, err: OSError | None) -> OSError:
    """One line naming the cache folder that cannot take a generated dataset, and what to do."""
    return OSError(f"dataset cache folder {folder}: cannot be written ({unwritable(folder, err)}); set "
                   "data.cache_dir or AUXNAS_CACHE to a writable folder")


def cache_problem(arrays: dict[str, np.ndarray], num_images: int, image_size: int) -> str | None:
    """What makes ``arrays`` (a loaded cache file) not ``num_images`` scenes at ``image_size``, or None."""
    version = arrays.get("format_version")
    if version is None or version.shape != () or int(version) != FORMAT_VERSION:
        return f"format_version {None if version is None else version.tolist()}, expected {FORMAT_VERSION}"
    n, s = num_images, image_size
    expected = {"image": ((n, s, s, 3), np.uint8), "seg": ((n, s, s), np.uint8), "depth": ((n, s, s), np.float32),
                "disparity": ((n, s, s), np.float32), "normal": ((n, s, s, 3), np.float32),
                "object": ((n,), np.int64), "scene": ((n,), np.int64), "fov": ((n,), np.float32)}
    if set(arrays) != {*expected, "format_version"}:
        return f"arrays {sorted(arrays)}, expected {sorted({*expected, 'format_version'})}"
    for key, (shape, dtype) in expected.items():
        if arrays[key].shape != shape or arrays[key].dtype != dtype:
            return f"{key} is {arrays[key].dtype} {arrays[key].shape}, expected {np.dtype(dtype)} {shape}"
    return None


class SyntheticScenes(IndexedImages):
    """The synthetic scenes of one split, generated once and cached on disk (``cache_path``).

    A cache file that cannot be read is regenerated with a warning.
    """

    def __init__(
        self,
        split: str = "train",
        num_images: int = 2000,
        image_size: int = 64,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        augment: bool = False,
        progress: bool = True,
    ) -> None:
        check_args(num_images, image_size, split)
        self.split, self.image_size, self.seed, self.augment = split, image_size, seed, augment
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_path = root / f"synthetic-v{FORMAT_VERSION}-{split}-seed{seed}-{image_size}px-n{num_images}.npz"
        self.arrays = self._load_or_generate(num_images, progress)
        self.arrays["layout"] = layout_labels(self.arrays["seg"])
        self.indices = np.arange(num_images)

    def image_names(self) -> list[str]:
        """Positions under the scenes' parameters (split, seed, size, count): the synthetic images are generated."""
        return [f"{self.cache_path.stem}/{j}" for j in self.indices]

    def _load_or_generate(self, num_images: int, progress: bool) -> dict[str, np.ndarray]:
        if self.cache_path.is_file():
            try:
                with np.load(self.cache_path, allow_pickle=False) as data:
                    arrays = {key: data[key] for key in data.files}
                problem = cache_problem(arrays, num_images, self.image_size)
            except Exception as err:  # truncated or foreign file: numpy/zipfile raise several types
                problem = f"unreadable ({err})"
            if problem is None:
                del arrays["format_version"]
                return arrays
            warnings.warn(f"{self.cache_path}: not a cache of these scenes ({problem}); regenerating", stacklevel=3)
        folder = self.cache_path.parent
        try:  # before generating: a folder that cannot take the cache fails at once
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _cache_folder_error(folder, err) from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise _cache_folder_error(folder, None)
        arrays = generate_scenes(num_images, self.image_size, self.seed, self.split, progress=progress)

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, format_version=np.array(FORMAT_VERSION), **arrays)

        try:
            atomic_write(self.cache_path, save)
        except OSError as err:
            raise _cache_folder_error(folder, err) from None
        return arrays

    @property
    def num_classes(self) -> dict[str, int]:
        return {"seg": len(SEG_CLASSES), "object": len(OBJECT_CLASSES), "scene": len(SCENE_CLASSES),
                "layout": len(LAYOUT_CLASSES)}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = int(self.indices[i])
        a = self.arrays
        sample = {
            "image": torch.from_numpy(a["image"][j]).permute(2, 0, 1).float() / 255,
            "seg": torch.from_numpy(a["seg"][j].astype(np.int64)),
            "depth": torch.from_numpy(a["depth"][j])[None],
            "disparity": torch.from_numpy(a["disparity"][j])[None],
            "normal": torch.from_numpy(a["normal"][j]).permute(2, 0, 1).contiguous(),
            "object": torch.tensor(int(a["object"][j])),
            "scene": torch.tensor(int(a["scene"][j])),
            "layout": torch.from_numpy(a["layout"][j].astype(np.int64)),
        }
        if self.augment:
            if torch.rand(()) < 0.5:
                sample = hflip(sample)
            sample["image"] = (sample["image"] * (0.8 + 0.4 * torch.rand(()))).clamp(0, 1)
        sample["image"] = normalise(sample["image"])
        return sample
