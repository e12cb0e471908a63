"""Reading the files of real datasets: PNG and ``.npy`` arrays, with errors that name the file; the checks of their
values that every reader shares (run on the first read of each file); and the decoding shared by the readers
(encoded normals, label planes, nearest-neighbour resizing)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..tasks.normals import MIN_NORMAL_NORM
from .transforms import NEAREST


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
        raise ValueError(f"{path}: expected {what} of shape {expected}, got {array.shape}"
                         f"{channels_first(array.shape, channels)}")
    return array


def channels_first(shape: tuple[int, ...], channels: int) -> str:
    """The hint for an array stored (C, H, W) where (H, W, C) is expected, else ""."""
    if len(shape) == 3 and shape[0] == channels and shape[2] != channels:
        return f": its channels come first; store it channels last, (H, W, C) = {(*shape[1:], channels)}"
    return ""


def label_plane(array: np.ndarray, path: Path) -> np.ndarray:
    """A one-channel label image as (H, W); a grey image saved with identical RGB(A) channels is accepted."""
    if array.ndim == 3 and array.shape[2] in (3, 4) and (array[..., 1:3] == array[..., :1]).all():
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a one-channel label image, got shape {array.shape}")
    return array


def decode_normals(encoded: np.ndarray, invalid: np.ndarray | None = None, keep_short: bool = False) -> torch.Tensor:
    """8-bit RGB normals ``(n + 1) * 127.5`` (H, W, 3) -> 3 x H x W unit vectors, renormalised.

    Pixels marked in ``invalid`` (H, W) become the zero vector, and so do those whose decoded vector is shorter than
    ``MIN_NORMAL_NORM`` (grey pixels, which encode no direction), unless ``keep_short``: they then keep their short
    decoding, which the normals task counts as invalid or scores (``tasks.nddr_grey_normals``).
    """
    decoded = encoded.transpose(2, 0, 1).astype(np.float32)  # 3 x H x W
    decoded /= np.float32(127.5)
    decoded -= np.float32(1)
    normals = torch.from_numpy(decoded)
    squared = normals[0] * normals[0] + normals[1] * normals[1] + normals[2] * normals[2]
    long = squared >= MIN_NORMAL_NORM ** 2
    factor = torch.where(long, squared.clamp_(min=MIN_NORMAL_NORM ** 2).rsqrt_(), 1.0 if keep_short else 0.0)
    if invalid is not None:
        factor.masked_fill_(torch.from_numpy(invalid), 0.0)
    return normals.mul_(factor)


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source rows (or columns) of a nearest-neighbour resize from ``source`` to ``target`` pixels: the source pixel
    whose centre is nearest each target pixel's centre, computed by the rule of every label resize
    (``transforms.NEAREST``), so that labels stay aligned with the bilinearly resized image."""
    positions = torch.arange(source, dtype=torch.float64).view(1, 1, source)
    return F.interpolate(positions, size=target, mode=NEAREST)[0, 0].long().numpy()


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


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` with an error that names the file (missing, truncated or not a plain .npy array)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing file") from None
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: unreadable .npy file ({err})") from None


# ---------------------------------------------------------------------------------------------------------------
# checks of the values a file holds; readers run them on the first read of each file (``IndexedImages.checked``)
# ---------------------------------------------------------------------------------------------------------------


def check_values(
    path: Path, array: np.ndarray, what: str, expected: str, low: float | None = None, high: float | None = None,
    integers: bool = False, hint: str | Callable[[float, float], str] = "",
) -> None:
    """A one-line ValueError naming ``path`` unless every value of ``array`` is finite, in [``low``, ``high``] and,
    with ``integers``, whole. ``what`` names the values and ``expected`` says what they must be (``"depth must be
    finite and >= 0"``); ``hint`` (or ``hint(min, max)``) says what to do about a known near-miss. Costs a min and
    a max (and for ``integers`` a comparison) of the array."""
    lo, hi = array.min(), array.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):  # min and max propagate NaN
        found = f"{int(np.count_nonzero(~np.isfinite(array)))} NaN or infinite values"
    elif (low is not None and lo < low) or (high is not None and hi > high):
        found = f"values in [{lo:.4g}, {hi:.4g}]"
    elif integers and array.dtype.kind == "f" and (fraction := array != np.floor(array)).any():
        where = tuple(int(i) for i in np.argwhere(fraction)[0])
        found = f"non-integer values, e.g. {array[where]:.4g} at pixel {where}"
    else:
        return
    text = hint(float(lo), float(hi)) if callable(hint) else hint
    raise ValueError(f"{path}: {what} must be {expected}, got {found}{f'; {text}' if text else ''}")


def vector_norms(vectors: np.ndarray) -> np.ndarray:
    """The norms of (H, W, 3) vectors (8x np.linalg.norm's speed)."""
    return np.sqrt(vectors[..., 0] ** 2 + vectors[..., 1] ** 2 + vectors[..., 2] ** 2)


#: how far from 1 the norm of a near-unit normal may be (see ``NEAR_UNIT_SHARE``)
NEAR_UNIT = 0.1
#: the share of a normals file's valid vectors that must be near unit: a resampled file blends unit vectors into
#: shorter ones at surface borders (a minority); a file of short vectors (scaled, or stored as (n + 1) / 2) is wrong
NEAR_UNIT_SHARE = 0.5


def check_normals(path: Path, normals: np.ndarray, norms: np.ndarray, low: float, high: float) -> None:
    """A one-line ValueError naming ``path`` unless every vector of (H, W, 3) ``normals`` (of ``vector_norms``
    ``norms``) is finite and either zero (invalid) or of a norm in [``low``, ``high``], and at least
    ``NEAR_UNIT_SHARE`` of the valid (non-zero) ones are within ``NEAR_UNIT`` of norm 1. The rule of every reader of
    ``.npy`` normals; normals stored as ``(n + 1) / 2`` (no component negative) are named as such."""
    top = norms.max()
    if not np.isfinite(top):
        count = int(np.count_nonzero(~np.isfinite(norms)))
        raise ValueError(f"{path}: normals must be finite, got {count} NaN or infinite vectors; mark invalid pixels "
                         "with the zero vector")
    valid = norms > 0
    if top <= high and (low <= 0 or np.where(valid, norms, high).min() >= low):
        count, near = int(np.count_nonzero(valid)), int(np.count_nonzero(np.abs(norms - 1) <= NEAR_UNIT))
        if near >= NEAR_UNIT_SHARE * count:
            return
        raise ValueError(f"{path}: normals must be unit vectors (0 = invalid), but {count - near} of the {count} valid "
                         f"vectors are off norm 1 by more than {NEAR_UNIT:g} (norms {norms[valid].min():.3g}.."
                         f"{top:.3g}){_half_encoded(normals, valid)}")
    off = valid & ((norms < low) | (norms > high))
    row, col = np.argwhere(off)[0]
    raise ValueError(f"{path}: {int(off.sum())} vectors are neither unit vectors nor zero (invalid): norms "
                     f"{norms[valid].min():.3g}..{top:.3g}, expected {low:g}..{high:g} (e.g. pixel ({row}, {col}) of "
                     f"norm {norms[row, col]:.3f}){_half_encoded(normals, valid)}")


def _half_encoded(normals: np.ndarray, valid: np.ndarray) -> str:
    """The hint for refused normals none of whose valid vectors has a negative component: stored as (n + 1) / 2."""
    if normals[valid].min() >= 0:
        return "; no component is negative: stored as (n + 1) / 2? store the unit vectors, 2 * v - 1"
    return ""


def _image_hint(low: float, high: float) -> str:
    if low < 0:
        return "ImageNet-normalised? store the [0, 1] image, auxnas normalises it"
    return "0..255 values? divide them by 255, or store uint8" if 1 < high <= 255 else ""


#: the folders whose uint8 images this process has said it reads as value / 255 (DataLoader workers inherit it)
_UINT8_FOLDERS: set[Path] = set()


def npy_image(path: Path, array: np.ndarray, check: bool = True) -> torch.Tensor:
    """An (H, W, 3) ``.npy`` image as a 3 x H x W float tensor in [0, 1].

    Float values must be in [0, 1] (checked when ``check``: a float file of other values is an error, since its
    range alone cannot tell a dark 0..255 image from a [0, 1] one); uint8 is unambiguously 8-bit and read as
    value / 255, which one line on stderr says once per folder (``_UINT8_FOLDERS``).
    """
    if array.dtype == np.uint8:
        if check and path.parent not in _UINT8_FOLDERS:
            _UINT8_FOLDERS.add(path.parent)
            tqdm.write(f"{path.parent}: 8-bit (uint8) .npy images, read as value / 255", file=sys.stderr)
        return image_tensor(array)
    if array.dtype.kind != "f":
        raise ValueError(f"{path}: expected float values in [0, 1] (or uint8), got dtype {array.dtype}")
    if check:
        check_values(path, array, "image values", "in [0, 1]", 0, 1, hint=_image_hint)
    return torch.from_numpy(array.astype(np.float32, copy=False)).permute(2, 0, 1).contiguous()
