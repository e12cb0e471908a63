"""Hostile command-line inputs (issue 33): a compare whose config names a method, a compare with nothing to compare,
an export over a symbolic link, a Ctrl-C at start-up or while the heavy modules import, an unexpected error
(AUXNAS_DEBUG re-raises it), a single-process command under torchrun. Each ends in one line or runs, never
in a traceback."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_inputs import SMALL, TRAIN, one_line_error

import auxnas.compare.comparison
import auxnas.train
from auxnas.cli import build_parser, main
from auxnas.config import ConfigError

#: the folder of auxnas's modules, which a traceback of a Ctrl-C that landed in them names
PACKAGE = str(Path(auxnas.__file__).parent)


def test_compare_accepts_a_single_task_config_with_auxiliary_tasks(tmp_path, capsys, monkeypatch):
    """``compare`` sets each row's method itself: the config's ``method.name: single`` with ``tasks.aux`` is only a
    starting point (``train`` still refuses it)."""
    monkeypatch.setattr(auxnas.compare.comparison, "profile_row",
                        lambda config, overrides: {"iteration_ms": 1.0, "peak_memory_mib": 1.0, "how": "not measured"})
    out = tmp_path / "out"
    assert main(["compare", "quickstart", *SMALL, "tasks.aux=[seg]", "--methods", "aux_head", "--seeds", "2",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["info"]["aux"] == ["seg"] and summary["info"]["rows"] == ["single", "aux_head"]
    assert sorted((r["row"], r["seed"]) for r in summary["runs"]) == [("aux_head", 0), ("aux_head", 1),
                                                                       ("single", 0), ("single", 1)]
    for run in summary["runs"]:  # each run's record names only its own method
        assert [o for o in run["overrides"] if o.startswith("method.name=")] == [f"method.name={run['row']}"]
    capsys.readouterr()
    err = one_line_error(capsys, [*TRAIN, "tasks.aux=[seg]", f"out_dir={tmp_path / 'run'}"])
    assert "single-task training uses no auxiliary task" in err


@pytest.mark.parametrize("methods", [["single"], ["single", "single+equal"]])
def test_compare_with_no_method_using_auxiliary_tasks_is_refused_before_training(tmp_path, capsys, methods):
    out = tmp_path / "out"
    err = one_line_error(capsys, ["compare", "demo", *SMALL, "--methods", *methods, "--seeds", "2",
                                  "--out", str(out)])
    assert "--methods: single-task is always the baseline row; name at least one method with auxiliary tasks" in err
    assert not out.exists()


def test_export_over_a_symbolic_link_is_refused_naming_it(tmp_path, capsys):
    """``--overwrite`` replaces an earlier export folder as a whole: a link to one is neither replaced nor followed
    (its target's files stay)."""
    run, target, link = tmp_path / "run", tmp_path / "export", tmp_path / "link"
    assert main([*TRAIN, f"out_dir={run}"]) == 0
    assert main(["export", str(run), "--out", str(target)]) == 0
    capsys.readouterr()
    link.symlink_to(target, target_is_directory=True)
    before = sorted(p.name for p in target.iterdir())
    for flag in (["--overwrite"], []):
        err = one_line_error(capsys, ["export", str(run), "--out", str(link), *flag])
        assert f"{link}: is a symbolic link (to {target})" in err
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == before


@pytest.mark.parametrize("delay", [0.05, 0.08, 0.15, 0.3])
def test_ctrl_c_at_start_up_is_one_line(tmp_path, delay):
    """A Ctrl-C while ``python -m auxnas`` imports its modules (the first tenths of a second) ends as one anywhere
    later does: ``auxnas: interrupted``, exit status 130, no traceback."""
    command = [sys.executable, "-m", "auxnas", *TRAIN, f"out_dir={tmp_path / 'run'}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0 or not err or ("Traceback" in err and PACKAGE not in err):
        return  # it finished first, or (on a busy machine) the signal came in Python's own start-up, before auxnas
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("auxnas: interrupted"), err
    # -SIGINT: Python < 3.12 ends so, after the handler, when the Ctrl-C landed in code run by exec (a dataclass's)
    assert process.returncode in (130, -signal.SIGINT)


# -- anything else that reaches the CLI


def test_an_unexpected_runtime_error_is_one_line_naming_the_command(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: something deep\n  with a second line")

    monkeypatch.setattr(auxnas.train, "evaluate", broken)
    monkeypatch.delenv("AUXNAS_DEBUG", raising=False)
    err = one_line_error(capsys, ["evaluate", str(tmp_path)])
    assert "unexpected" in err and "auxnas evaluate" in err and "CUDA error: something deep" in err
    assert "AUXNAS_DEBUG=1" in err


def test_auxnas_debug_re_raises(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("deep")

    monkeypatch.setattr(auxnas.train, "evaluate", broken)
    monkeypatch.setenv("AUXNAS_DEBUG", "1")
    with pytest.raises(RuntimeError, match="deep"):
        main(["evaluate", str(tmp_path)])
    with pytest.raises(ConfigError, match="train.epochz"):
        main(["train", "quickstart", "train.epochz=1"])
    monkeypatch.setenv("AUXNAS_DEBUG", "0")
    assert main(["train", "quickstart", "train.epochz=1"]) == 2
    assert "AUXNAS_DEBUG" in build_parser().format_help()


def test_keyboard_interrupt_is_unchanged(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(auxnas.train, "evaluate", interrupted)
    assert main(["evaluate", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "auxnas: interrupted"


@pytest.mark.parametrize(("argv", "command"), [
    (["demo", "--quick"], "demo"), (["bench", "accuracy", "--preset", "smoke"], "bench accuracy"),
    (["bench", "cost"], "bench cost"), (["export", "RUN", "--out", "OUT"], "export"), (["evaluate", "RUN"], "evaluate"),
])
def test_single_process_commands_refuse_to_start_under_torchrun(argv, command, monkeypatch, capsys, tmp_path):
    """torchrun starts every command on every rank: a single-process one would write and time the same thing twice,
    or wait on collectives forever. It refuses in one line before doing anything."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "runs in one process, but torchrun started 2" in err
    assert f"`auxnas {command}` runs in one process" in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_torch_and_timm_import_is_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C during start-up, while the heavy modules import inside the command, ends in one line, exit 130."""
    import sys

    class InterruptedImport:
        def find_spec(self, name, path=None, target=None):
            if name == "auxnas.distributed":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "auxnas.distributed", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    assert main(["train", "quickstart", f"out_dir={tmp_path / 'run'}", "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["auxnas: interrupted"]
