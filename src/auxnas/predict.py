"""``auxnas predict``: an exported primary network applied to image files under its contract (``exported.yaml``).

The contract (``export_options.deployment_contract``) says what the network takes and gives; this module applies
it so that a user does not have to: RGB / 255, ImageNet mean and std, NCHW float32, the image resized to the
network's size only where that size is fixed (ViTs), the prediction at the image's own size. Dense class maps are
written as PNG (the argmax), other dense outputs as ``.npy`` (H x W, or H x W x C), image-level outputs into one
``predictions.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .data.folder_read import read_image
from .errors import ExportError
from .export import load_exported, read_export_spec
from .storage import atomic_write, check_output_folder, write_json

#: the kinds whose output is a class map (written as a PNG of class indices)
CLASS_MAPS = ("segmentation",)
#: the kinds whose output is one prediction per image (written into ``predictions.json``)
IMAGE_LEVEL = ("classification", "multilabel", "image_regression")
#: the file of every image-level prediction
PREDICTIONS_FILE = "predictions.json"


def preprocess(image: torch.Tensor, contract: dict[str, Any]) -> torch.Tensor:
    """A 3 x H x W image in [0, 1] as the network's input: 1 x 3 x H x W, normalised, resized to the fixed size
    of a network that has one."""
    pre = contract["preprocessing"]
    mean = torch.tensor(pre["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(pre["std"], dtype=torch.float32)[:, None, None]
    x = ((image.float() - mean) / std)[None]
    size = contract["input"]["height"], contract["input"]["width"]
    if all(isinstance(s, int) for s in size) and tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def decode(output: torch.Tensor, contract: dict[str, Any], size: tuple[int, int]) -> Any:
    """The network's output for one image as what a user keeps: a class map (H x W, int64), values (H x W or
    H x W x C, float32), or a JSON-ready dict for image-level kinds. Dense outputs come back at ``size``."""
    kind = contract["output"]["kind"]
    if kind in IMAGE_LEVEL:
        values = output[0].float()
        if kind == "classification":
            probs = values.softmax(0)
            return {"class": int(probs.argmax()), "probabilities": [round(float(p), 6) for p in probs]}
        if kind == "multilabel":
            probs = values.sigmoid()
            return {"present": [i for i, p in enumerate(probs) if p > 0.5],
                    "probabilities": [round(float(p), 6) for p in probs]}
        return {"values": [float(v) for v in values]}
    if tuple(output.shape[-2:]) != size:
        output = F.interpolate(output.float(), size=size, mode="bilinear", align_corners=False)
    if kind in CLASS_MAPS:
        return output[0].argmax(0).numpy()
    if kind == "normals":
        output = F.normalize(output, dim=1)
    values = output[0].float().numpy()
    return values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1)


def _write_class_map(path: Path, classes: np.ndarray) -> None:
    dtype = np.uint8 if classes.max(initial=0) < 256 else np.uint16
    atomic_write(path, lambda tmp: Image.fromarray(classes.astype(dtype)).save(tmp, format="PNG"))


def _save_npy(path: Path, values: np.ndarray) -> None:
    with open(path, "wb") as file:  # a file object: np.save would add .npy to the temporary name
        np.save(file, values.astype(np.float32))


def predict(
    export_dir: str | os.PathLike, images: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
    progress: bool = True,
) -> list[Path]:
    """Apply the exported network in ``export_dir`` to every image file (PNG, JPG, or .npy H x W x 3 in [0, 1] or
    uint8) and write each prediction into ``out_dir`` (absent or empty): ``<stem>.png`` for class maps,
    ``<stem>.npy`` for other dense outputs, ``predictions.json`` (stem -> prediction) for image-level ones.
    Returns the files written."""
    export_dir, out = Path(export_dir), Path(out_dir)
    contract = read_export_spec(export_dir).get("contract")
    if contract is None:
        raise ExportError(f"{export_dir / 'exported.yaml'}: states no input/output contract (an export of an older "
                          "auxnas); export the run again")
    paths = [Path(p) for p in images]
    if not paths:
        raise ValueError("predict: no image given")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such image file" + (f" (and {len(missing) - 1} more)"
                                                                        if len(missing) > 1 else ""))
    stems = [p.stem for p in paths]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ValueError(f"predict: images {', '.join(repeated)} share a name; their predictions would overwrite "
                         "each other: predict them into separate --out folders")
    check_output_folder(out, lambda folder: "files of its own; predictions go into an empty folder",
                        "choose another --out")
    network = load_exported(export_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind, written, image_level = contract["output"]["kind"], [], {}
    with torch.no_grad():
        for path in tqdm(paths, desc="predict", unit="image", disable=not progress):
            image = read_image(path)
            prediction = decode(network(preprocess(image, contract)), contract, tuple(image.shape[-2:]))
            if kind in IMAGE_LEVEL:
                image_level[path.stem] = prediction
            elif kind in CLASS_MAPS:
                written.append(out / f"{path.stem}.png")
                _write_class_map(written[-1], prediction)
            else:
                written.append(out / f"{path.stem}.npy")
                atomic_write(written[-1], lambda tmp, a=prediction: _save_npy(tmp, a))
    if image_level:
        written.append(write_json(out / PREDICTIONS_FILE, image_level))
    return written

