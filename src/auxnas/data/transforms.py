"""Label-consistent training augmentation for dense multi-task samples, and the image normalisation.

A sample is a dict of tensors: ``image`` 3xHxW in [0, 1] and its tasks' targets under their names. What a transform
does to a target depends on its task's kind (``kinds``: sample key -> kind, by default the built-in tasks' kinds):
segmentation maps are HxW int64, the other dense labels CxHxW float (depth, disparity, normals: 0 = invalid), and
image-level targets are left alone. Every dense label is resampled with nearest neighbours, so invalid markers (255,
0, NaN) never blend into valid values, by one rule, ``NEAREST``: each output pixel takes the source pixel whose centre
is nearest its own centre, as the bilinear (``align_corners=False``) resampling of the image does, so that labels
stay aligned with the image.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..export_options import IMAGENET_MEAN, IMAGENET_STD  # the normalisation timm's pretrained backbones expect
from ..tasks import BUILTIN_KINDS

#: zoom factors of the random scale-and-crop (the MTAN-family recipe)
SCALES = (1.0, 1.2, 1.5)
#: the dense task kinds and what a zoom by ``s`` does to their values, times ``s ** exponent``: depth / s,
#: disparity * s, the rest unchanged; every other kind is image-level
ZOOM_EXPONENTS = {"segmentation": 0, "normals": 0, "dense_regression": 0, "depth": -1, "disparity": 1}
#: the nearest-neighbour rule of every label resize: centre-aligned (torch's "nearest" takes floor(i * scale),
#: which shifts labels up to one source pixel up-left of the image)
NEAREST = "nearest-exact"


def scale_crop(
    sample: dict[str, Tensor], scale: float, top: float, left: float, kinds: Mapping[str, str] = BUILTIN_KINDS
) -> dict[str, Tensor]:
    """Zoom in by ``scale``: crop a window of ``1/scale`` of the image and resize it back to full size.

    ``top`` and ``left`` in [0, 1] place the window. This equals scaling up by ``scale`` then cropping the
    original size, at a fraction of the cost. The image is resampled bilinearly, the labels by nearest
    neighbour; the scene looks ``scale`` times closer, so depth is divided by ``scale`` and disparity
    multiplied by it (invalid zeros stay zero). ``kinds``: the kind of each label (see the module).
    """
    height, width = sample["image"].shape[-2:]
    crop_h, crop_w = max(1, round(height / scale)), max(1, round(width / scale))
    y0, x0 = round(top * (height - crop_h)), round(left * (width - crop_w))
    out = dict(sample)
    for key, value in sample.items():
        kind = kinds.get(key)
        if key != "image" and kind not in ZOOM_EXPONENTS:
            continue
        window = value[..., y0:y0 + crop_h, x0:x0 + crop_w]
        if key == "image":
            out[key] = F.interpolate(window[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        elif kind == "segmentation":
            out[key] = F.interpolate(window[None, None].float(), size=(height, width), mode=NEAREST)[0, 0].long()
        else:
            resized = F.interpolate(window[None], size=(height, width), mode=NEAREST)[0]
            out[key] = resized * scale ** ZOOM_EXPONENTS[kind]
    return out


def hflip(sample: dict[str, Tensor], kinds: Mapping[str, str] = BUILTIN_KINDS) -> dict[str, Tensor]:
    """Mirror the image and the dense labels left-right (``kinds``: the kind of each label); the x component
    (pointing right) of normals changes sign."""
    out = dict(sample)
    for key, value in sample.items():
        if key == "image" or kinds.get(key) in ZOOM_EXPONENTS:
            out[key] = value.flip(-1)
            if kinds.get(key) == "normals":
                out[key][0].neg_()
    return out


def augment(
    sample: dict[str, Tensor], generator: torch.Generator | None = None, kinds: Mapping[str, str] = BUILTIN_KINDS
) -> dict[str, Tensor]:
    """Random scale from ``SCALES`` with a random crop, then a horizontal flip with probability 1/2 (``kinds``: the
    kind of each label)."""
    draws = torch.rand(4, generator=generator).tolist()
    scale = SCALES[min(int(draws[0] * len(SCALES)), len(SCALES) - 1)]
    if scale != 1.0:
        sample = scale_crop(sample, scale, draws[1], draws[2], kinds)
    return hflip(sample, kinds) if draws[3] < 0.5 else sample


def normalise(image: Tensor) -> Tensor:
    """ImageNet mean/std normalisation of a 3xHxW image in [0, 1] (every dataset's last step)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype)[:, None, None]
    return (image - mean) / std


def resize(
    key: str, value: torch.Tensor, size: tuple[int, int], kinds: Mapping[str, str] = BUILTIN_KINDS
) -> torch.Tensor:
    """``value`` of sample key ``key`` at ``size``: the image bilinearly (antialiased), dense labels by nearest
    neighbour (no invalid marker blends into a valid value, unit normals stay unit); image-level targets unchanged.
    ``kinds``: the kind of each label."""
    if value.dim() < 2 or tuple(value.shape[-2:]) == tuple(size):
        return value
    if key == "image":
        return F.interpolate(value[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    if kinds.get(key) == "segmentation":
        return F.interpolate(value[None, None].float(), size=size, mode=NEAREST)[0, 0].long()
    return F.interpolate(value[None], size=size, mode=NEAREST)[0]


def resize_sample(
    sample: dict[str, Tensor], size: tuple[int, int], kinds: Mapping[str, str] = BUILTIN_KINDS
) -> dict[str, Tensor]:
    """Every image and dense label of ``sample`` at ``size`` (``resize``; ``kinds``: the kind of each label); other
    keys unchanged."""
    return {k: resize(k, v, size, kinds) if k == "image" or kinds.get(k) in ZOOM_EXPONENTS else v
            for k, v in sample.items()}
