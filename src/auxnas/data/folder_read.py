"""One file of a folder dataset (``data.name: folder``) read into its sample tensor: an image, or a task's label
at its native size, with its values checked on first reading; and the targets and errors around them. Every error
is one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..storage import one_line
from .files import (
    channels_first,
    check_normals,
    check_values,
    decode_normals,
    image_tensor,
    label_plane,
    npy_image,
    png_size,
    read_npy,
    read_png,
    rgb_array,
    vector_norms,
)
from .folder_layout import DATASET_FILE, TaskSpec
from .synthetic import IGNORE_INDEX

#: a unit normal read from .npy may deviate this much from norm 1
UNIT_TOLERANCE = 0.01


def _npy(path: Path, ndim_channels: int) -> np.ndarray:
    """An .npy array of shape (H, W, channels) (or (H, W) for one channel), as (H, W, channels); numeric."""
    array = read_npy(path)
    if ndim_channels == 1 and array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] != ndim_channels:
        expected = "(H, W) or (H, W, 1)" if ndim_channels == 1 else f"(H, W, {ndim_channels})"
        raise ValueError(f"{path}: expected shape {expected}, got {array.shape}"
                         f"{channels_first(array.shape, ndim_channels)}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    return array


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    if path.suffix.lower() != ".npy":
        return png_size(path)
    shape = read_npy(path, mmap=True).shape
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{path}: expected shape (H, W, 3), got {shape}{channels_first(shape, 3)}")
    return shape[0], shape[1]


def read_image(path: Path, check: bool = True) -> torch.Tensor:
    """An image file as a 3 x H x W float tensor in [0, 1]: 8-bit RGB PNG / JPG, or .npy (H, W, 3) float in [0, 1]
    or uint8 (``files.npy_image``); with ``check``, the values of a .npy file are checked."""
    if path.suffix.lower() == ".npy":
        return npy_image(path, _npy(path, 3), check)
    return image_tensor(rgb_array(path))


def read_label(spec: TaskSpec, path: Path, check: bool = True) -> torch.Tensor:
    """A label file as the sample's target at its native size; with ``check``, its values are checked (image-level
    files, being small, always are).

    By the task's kind: segmentation H x W int64 (``spec.ignore`` -> ``IGNORE_INDEX``); depth, disparity 1 x H x W
    float (0 = invalid); dense regression C x H x W float; normals 3 x H x W unit vectors (0 = invalid);
    classification a 0-d int64 class; multi-label C floats 0 or 1; image regression C floats.
    """
    suffix = path.suffix.lower()
    kind = spec.kind
    if kind == "classification":
        return torch.tensor(_read_class(spec, path, suffix))
    if kind in ("multilabel", "image_regression"):
        return torch.from_numpy(_read_vector(spec, path, suffix))
    if kind == "segmentation":
        return torch.from_numpy(_read_seg(spec, path, suffix, check))
    if kind == "normals":
        return _read_normal(spec, path, check)
    if kind == "dense_regression":
        return _read_dense(spec, path, suffix, check)
    if suffix == ".png":
        array = read_png(path)
        if array.ndim != 2 or array.dtype.kind not in "iu" or array.dtype.itemsize < 2:
            raise ValueError(f"{path}: expected a 16-bit single-channel PNG ({spec.name} x scale), got shape "
                             f"{array.shape} dtype {array.dtype}")
        values = array.astype(np.float32) / np.float32(spec.scale)
    else:
        values = _npy(path, 1)[..., 0]
        if check:
            check_values(path, values, spec.name, "finite and >= 0 (0 = invalid)", low=0,
                         hint="mark invalid pixels with 0")
        values = values.astype(np.float32)
    return torch.from_numpy(values)[None]


def _read_class(spec: TaskSpec, path: Path, suffix: str) -> int:
    if suffix == ".txt":
        try:
            text = path.read_text().strip()
            value = int(text)
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"{path}: expected one integer class, got {path.read_bytes()[:40]!r}") from None
    else:
        array = read_npy(path)
        if array.size != 1 or array.ndim > 1 or array.dtype.kind not in "iu":
            raise ValueError(f"{path}: expected one integer class (an int scalar), got shape {array.shape} "
                             f"dtype {array.dtype}")
        value = int(array.reshape(()))
    if not 0 <= value < spec.classes:
        raise ValueError(f"{path}: class {value} out of range 0..{spec.classes - 1}")
    return value


def _read_vector(spec: TaskSpec, path: Path, suffix: str) -> np.ndarray:
    """A multi-label or image regression file: ``spec.channels`` numbers (a .txt of numbers separated by spaces or
    new lines, or a .npy scalar or vector), checked, as float32."""
    count = spec.channels
    multilabel = spec.kind == "multilabel"
    what = f"{count} labels 0 or 1 (one per class)" if multilabel else f"{count} number{'s' * (count > 1)}"
    if suffix == ".txt":
        try:
            values = np.array(path.read_text().split(), dtype=np.float64)
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"{path}: expected {what}, got {path.read_bytes()[:40]!r}") from None
    else:
        values = read_npy(path)
        if values.ndim > 1 or values.dtype.kind not in "biuf":
            raise ValueError(f"{path}: expected {what} (a .npy scalar or vector), got shape {values.shape} dtype "
                             f"{values.dtype}")
        values = values.reshape(-1).astype(np.float64)
    if values.size != count:
        raise ValueError(f"{path}: expected {what}, got {values.size} value{'s' * (values.size != 1)}")
    if multilabel and not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: expected {what}, got {values[~np.isin(values, (0, 1))][0]:g}")
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: {spec.name} values must be finite, got {int((~np.isfinite(values)).sum())} NaN or "
                         "infinite values")
    return values.astype(np.float32)


def _read_dense(spec: TaskSpec, path: Path, suffix: str, check: bool) -> torch.Tensor:
    """A dense regression file: an 8- or 16-bit PNG of ``spec.channels`` channels (value / ``spec.scale``), or a
    .npy (H, W, channels) ((H, W) for one channel), as channels x H x W float32. With ``check``, its values must be
    finite, or NaN where ``invalid: nan`` marks invalid pixels."""
    channels = spec.channels
    if suffix == ".png":
        array = read_png(path)
        if channels == 1:
            array = label_plane(array, path)
        if array.dtype.kind not in "iu" or array.shape[2:] != ((channels,) if channels > 1 else ()):
            raise ValueError(f"{path}: expected an 8- or 16-bit PNG of {channels} channel{'s' * (channels > 1)} "
                             f"({spec.name} x scale), got shape {array.shape} dtype {array.dtype}")
        values = array.astype(np.float32) / np.float32(spec.scale)
    else:
        values = _npy(path, channels).astype(np.float32)
        if check:
            nan = spec.declaration["invalid"] == "nan"
            bad = np.isinf(values) if nan else ~np.isfinite(values)
            if bad.any():
                hint = "" if nan else "; mark invalid pixels with NaN and declare invalid: nan, or with a number"
                raise ValueError(f"{path}: {spec.name} values must be finite{' or NaN (invalid)' if nan else ''}, "
                                 f"got {int(bad.sum())} {'infinite' if nan else 'NaN or infinite'} values{hint}")
    values = values.reshape(*values.shape[:2], channels)
    return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))


def _read_seg(spec: TaskSpec, path: Path, suffix: str, check: bool) -> np.ndarray:
    if suffix == ".png":
        labels = label_plane(read_png(path), path)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{path}: expected a PNG of integer class indices, got dtype {labels.dtype}")
    else:
        labels = _npy(path, 1)[..., 0]
        if check:
            check_values(path, labels, "labels", f"integer classes 0..{spec.classes - 1} or the ignore value "
                         f"{spec.ignore}", integers=True)
    labels = labels.astype(np.int64)
    ignored = labels == spec.ignore
    if check:
        bad = (labels < 0) | (labels >= spec.classes)
        bad &= ~ignored
        if bad.any():
            values = np.unique(labels[bad])
            raise ValueError(f"{path}: labels must be classes 0..{spec.classes - 1} or the ignore value "
                             f"{spec.ignore}, got {one_line([str(v) for v in values], 5)}")
    if spec.ignore != IGNORE_INDEX:
        labels[ignored] = IGNORE_INDEX
    return labels


def _read_normal(spec: TaskSpec, path: Path, check: bool) -> torch.Tensor:
    if spec.encoding == "rgb8":
        encoded = rgb_array(path)
        return decode_normals(encoded, invalid=(encoded[..., 0] | encoded[..., 1] | encoded[..., 2]) == 0)
    normals = _npy(path, 3).astype(np.float32)
    norms = vector_norms(normals)
    if check:
        check_normals(path, normals, norms, 1 - UNIT_TOLERANCE, 1 + UNIT_TOLERANCE)
    valid = norms > 0
    unit = np.where(valid[..., None], normals / np.where(valid, norms, 1)[..., None], np.float32(0))
    return torch.from_numpy(unit.astype(np.float32, copy=False)).permute(2, 0, 1).contiguous()


def placeholder(spec: TaskSpec, size: tuple[int, int]) -> torch.Tensor:
    """The target of an image without ``spec``'s label: all ignored (segmentation), class 0, zeros (the rest)."""
    if spec.kind == "segmentation":
        return torch.full(size, IGNORE_INDEX, dtype=torch.int64)
    if spec.kind == "classification":
        return torch.tensor(0)
    if spec.kind in ("multilabel", "image_regression"):
        return torch.zeros(spec.channels)
    return torch.zeros(spec.channels, *size)


def check_label_size(path: Path, label: torch.Tensor, image_path: Path, native: tuple[int, int]) -> None:
    """A dense label must have its image's size."""
    if label.dim() >= 2 and tuple(label.shape[-2:]) != native:
        (h, w), (ih, iw) = label.shape[-2:], native
        raise ValueError(f"{path}: {h}x{w}, but its image {image_path} is {ih}x{iw}")


def size_mismatch(path: Path, native: tuple[int, int], size: tuple[int, int]) -> ValueError:
    """The error of an image whose size differs from the dataset's (without ``size`` in dataset.yaml)."""
    return ValueError(f"{path}: {native[0]}x{native[1]}, but the first training image is {size[0]}x{size[1]}; set "
                      f"size: [H, W] in {DATASET_FILE} to resize every image and label")
