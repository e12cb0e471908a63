"""Atomic writes: the user's umask, and nothing left behind when a write fails."""

import os

import pytest

from auxnas.storage import write_text


def test_written_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path):
    from auxnas.storage import atomic_write

    def interrupted(tmp):
        tmp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "b.txt", interrupted)
    assert list(tmp_path.iterdir()) == []
