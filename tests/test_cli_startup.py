"""The command line answers ``--help`` and argument errors without importing torch (in well under a second)."""

import json
import subprocess
import sys

import pytest

#: prints which heavy packages a command line call imported, then exits with its status
PROBE = """
import json, sys
from auxnas.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:
    code = done.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'torchvision', 'numpy', 'tqdm'})
print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)
"""


def imported(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [
    ["--help"], ["train", "--help"], ["export", "--help"], ["bench", "accuracy", "--help"], ["nonsense"],
    ["export", "run", "--out", "x", "--threshold", "2"], ["bench", "accuracy", "--preset", "nope"],
])
def test_help_and_argument_errors_import_no_torch(args):
    result = imported(*args)
    assert result["code"] in (0, 2)
    assert result["heavy"] == []


def test_python_m_auxnas_help_imports_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "auxnas", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "usage: auxnas" in done.stdout
    modules = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "auxnas" in modules and "torch" not in modules


def test_the_config_is_a_leaf():
    """``auxnas.config`` (YAML and overrides) imports nothing else of auxnas but its schema and checks, nor torch."""
    probe = ("import sys, auxnas.config; print(sorted(m for m in sys.modules if m.startswith('auxnas') or "
             "m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "['auxnas', 'auxnas.config', 'auxnas.config.checks', 'auxnas.config.schema']", \
        done.stderr
