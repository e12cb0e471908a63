"""A stopped comparison leaves no worker behind: ``train_units`` ends its processes when it is killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from auxnas.compare.execute import Unit, train_units

    overrides = ("data.image_size=32", "data.num_train=40", "data.num_test=8", "data.batch_size=8",
                 "train.epochs=50", "train.tensorboard=false")
    units = [Unit("demo", overrides, {"single": ("method.name=single", "tasks.aux=[]")}, ("single",), seed,
                  Path(sys.argv[1]), f"seed {seed}") for seed in (0, 1)]
    train_units(units, 2, reuse=False, show=None)
""")


def workers_of(pid: int) -> list[int]:
    """The pool's worker processes of ``pid``: its children that run ``spawn_main`` (from /proc; not the resource
    tracker, which ends on its own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid and b"spawn_main" in command and b"resource_tracker" not in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
def test_a_killed_comparison_ends_its_workers(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUXNAS_CACHE": str(tmp_path / "cache")}
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "runs")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (tmp_path / "runs" / "single" / "seed1" / "config.yaml").exists():  # both workers train
        assert parent.poll() is None and time.monotonic() < deadline, parent.stdout.read().decode()[-2000:]
        time.sleep(0.2)
    workers = workers_of(parent.pid)
    assert len(workers) >= 2
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=60)
    time.sleep(1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == []
