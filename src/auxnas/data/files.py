"""Reading the files of real datasets: PNG and ``.npy`` arrays, with errors that name the file, and the decoding
shared by the readers (encoded normals, label planes, nearest-neighbour resizing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: a decoded normal shorter than this cannot be renormalised and is invalid (a real one has norm 1.00 +- 0.01)
MIN_NORMAL_NORM = 0.5



def read_png(path: Path) -> np.ndarray:
    """The pixels of an image file as an array ((H, W) or (H, W, C)); a missing, truncated or unreadable file
    raises ``FileNotFoundError`` / ``ValueError`` naming it."""
    try:
        with Image.open(path) as image:
            return np.array(image)  # writable (torch.from_numpy warns on read-only arrays)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing file") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: unreadable image file ({err})") from None


def png_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: unreadable image file ({err})") from None


def check_shape(array: np.ndarray, path: Path, size: tuple[int, int], channels: int, what: str) -> np.ndarray:
    """``array`` if it is (H, W, channels) ((H, W) for one channel) of ``size``; else a ValueError naming ``path``."""
    expected = (*size, channels) if channels > 1 else tuple(size)
    if array.shape != expected:
        raise ValueError(f"{path}: expected {what} of shape {expected}, got {array.shape}")
    return array


def label_plane(array: np.ndarray, path: Path) -> np.ndarray:
    """A one-channel label image as (H, W); a grey image saved with identical RGB(A) channels is accepted."""
    if array.ndim == 3 and array.shape[2] in (3, 4) and (array[..., 1:3] == array[..., :1]).all():
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a one-channel label image, got shape {array.shape}")
    return array


def decode_normals(encoded: np.ndarray, invalid: np.ndarray | None = None) -> torch.Tensor:
    """8-bit RGB normals ``(n + 1) * 127.5`` (H, W, 3) -> 3 x H x W unit vectors, renormalised.

    Pixels marked in ``invalid`` (H, W) and those whose decoded vector is shorter than ``MIN_NORMAL_NORM`` become
    the zero vector.
    """
    decoded = encoded.transpose(2, 0, 1).astype(np.float32)  # 3 x H x W
    decoded /= np.float32(127.5)
    decoded -= np.float32(1)
    normals = torch.from_numpy(decoded)
    squared = normals[0] * normals[0] + normals[1] * normals[1] + normals[2] * normals[2]
    valid = squared >= MIN_NORMAL_NORM ** 2
    if invalid is not None:
        valid &= ~torch.from_numpy(invalid)
    return normals.mul_(torch.where(valid, squared.clamp_(min=MIN_NORMAL_NORM ** 2).rsqrt_(), 0.0))


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source rows (or columns) of a nearest-neighbour resize from ``source`` to ``target`` pixels."""
    return np.minimum(((np.arange(target) + 0.5) * (source / target)).astype(np.int64), source - 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W[, C]) array to ``size``; no value is blended (labels, invalid markers)."""
    if array.shape[:2] == tuple(size):
        return array
    rows, cols = nearest_indices(array.shape[0], size[0]), nearest_indices(array.shape[1], size[1])
    return array[rows[:, None], cols[None, :]]


def image_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> 3 x H x W float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255)


def rgb_array(path: Path) -> np.ndarray:
    """An 8-bit RGB image file as (H, W, 3) uint8; another kind of image raises ``ValueError`` naming it."""
    array = read_png(path)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{path}: expected an 8-bit RGB image, got shape {array.shape} dtype {array.dtype}")
    return array


# ---------------------------------------------------------------------------------------------------------------
# the NDDR layout
# ---------------------------------------------------------------------------------------------------------------


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` with an error that names the file (missing, truncated or not a plain .npy array)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing file") from None
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: unreadable .npy file ({err})") from None
