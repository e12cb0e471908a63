"""Launching data-parallel training: ``torchrun ... -m auxnas train`` runs the command line (one report, one run
directory), and the collectives' timeout comes from the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from distributed_helpers import BASE, free_port

from auxnas.distributed import COLLECTIVE_TIMEOUT, collective_timeout


def test_torchrun_runs_the_command_line(tmp_path):
    """``torchrun --nproc_per_node 2 -m auxnas train ...``: one report (rank 0's), one complete run directory."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUXNAS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         "-m", "auxnas", "train", "demo", *BASE, "train.epochs=1", "data.augment=true", f"out_dir={run}", "--quiet"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1  # rank 0 alone reports
    assert {"config.yaml", "best.pt", "last.pt", "metrics.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][0]["val"]["normal"]["num_images"] == 8  # the whole validation split, pooled once


def test_the_collective_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("AUXNAS_COLLECTIVE_TIMEOUT", raising=False)
    assert collective_timeout().total_seconds() == COLLECTIVE_TIMEOUT
    monkeypatch.setenv("AUXNAS_COLLECTIVE_TIMEOUT", "90")
    assert collective_timeout().total_seconds() == 90
    for bad in ("soon", "0", "-5", "inf"):
        monkeypatch.setenv("AUXNAS_COLLECTIVE_TIMEOUT", bad)
        with pytest.raises(ValueError, match="AUXNAS_COLLECTIVE_TIMEOUT.*positive number of seconds"):
            collective_timeout()
