"""What ``auxnas export`` accepts, without torch: the deployment formats and the a2p threshold rule."""

import math

#: deployment format -> the file ``export_primary`` writes for it
FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx", "pt2": "model.pt2"}


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a finite number in [0, 1) (a link strength below 1 that can be cut), else ValueError."""
    if not (math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise ValueError(f"export threshold must be a finite number in [0, 1), got {threshold!r}")
    return float(threshold)
