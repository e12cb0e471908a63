"""What ``auxnas export`` accepts and writes, without torch: the deployment formats, the a2p threshold rule, the
files of an export folder and the deployed network's contract (``exported.yaml``'s ``contract``)."""

import math
import re
from pathlib import Path
from typing import Any

#: ImageNet channel statistics: every auxnas dataset normalises images with them (``data.transforms``)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: deployment format -> the file ``export_primary`` writes for it
FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx", "pt2": "model.pt2"}
#: every file an export writes (``model.onnx.data`` only for ONNX weights above ``export.ONNX_EMBED_LIMIT``)
EXPORT_FILES = ("model.safetensors", "exported.yaml", "export_report.json", *FORMATS.values(), "model.onnx.data")
#: the hidden weights file that ONNX exports of earlier versions left beside ``model.onnx``
_OLD_ONNX_DATA = re.compile(r"\.model\.onnx\..+\.tmp\.data")


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a finite number in [0, 1) (a link strength below 1 that can be cut), else ValueError."""
    if not (math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise ValueError(f"export threshold must be a finite number in [0, 1), got {threshold!r}")
    return float(threshold)


def written_by_export(path: Path) -> bool:
    """Whether ``path`` is a file an export writes (an earlier export's, in a folder ``--overwrite`` may replace)."""
    return path.is_file() and (path.name in EXPORT_FILES or _OLD_ONNX_DATA.fullmatch(path.name) is not None)


def is_export_folder(path: Path) -> bool:
    """Whether ``path`` is the folder of an export (its report, and no file an export does not write)."""
    return (path / "export_report.json").is_file() and all(written_by_export(p) for p in path.iterdir())


#: task kind -> what the exported network's output is and how to read it
OUTPUTS = {
    "segmentation": "class logits, B x C x H x W at the input's size (C classes); a pixel's class is the argmax over C",
    "normals": "surface normals, B x 3 x H x W at the input's size; L2-normalise over the 3 channels for unit vectors",
    "depth": "depth, B x 1 x H x W at the input's size, in the labels' units (metres for the built-in readers)",
    "disparity": "disparity, B x 1 x H x W at the input's size, in the labels' units",
    "dense_regression": "values, B x C x H x W at the input's size, in the labels' units",
    "classification": "class logits, B x C; the class is the argmax, softmax gives probabilities",
    "multilabel": "per-class logits, B x C; sigmoid > 0.5 marks a class present",
    "image_regression": "values, B x C, in the labels' units",
}


def deployment_contract(kind: str, channels: int, image_size: int, min_side: int | None) -> dict[str, Any]:
    """What the exported network takes and gives (``exported.yaml``'s ``contract``; ``auxnas predict`` applies it):
    the input format and size (any height and width from ``min_side`` on, or ``image_size`` squares when None: a
    ViT's position embedding fixes it), the preprocessing, and the output of a task of ``kind``."""
    size = ({"height": f">= {min_side}", "width": f">= {min_side}"} if min_side is not None
            else {"height": image_size, "width": image_size})
    return {
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": "RGB", **size,
                  "trained_at": image_size},
        "preprocessing": {"steps": "RGB values / 255, then (x - mean) / std per channel", "mean": list(IMAGENET_MEAN),
                          "std": list(IMAGENET_STD)},
        "output": {"name": "output", "kind": kind, "channels": channels, "meaning": OUTPUTS[kind]},
    }
