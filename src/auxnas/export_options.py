"""What ``auxnas export`` accepts and writes, without torch: the deployment formats, the a2p threshold rule and
the files of an export folder."""

import math
import re
from pathlib import Path

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
