"""The one atomic writer (`optimum_dynexec.utils.io`): all or nothing, readable files, abandoned staging removed."""

import errno
import os
import stat
import subprocess
import sys

import pytest

from optimum_dynexec.utils.io import (STAGING_PREFIX, atomic_directory, atomic_file, remove_abandoned_staging,
                                      write_text_atomically)


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "a.txt").write_text("second")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(OSError, match=f"Could not write {target}.*free space"):
        with atomic_directory(target) as staging:
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # no staging left behind


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    """A file written by name (as `torch.save` writes checkpoints) appears whole, or the old one stays."""
    target = tmp_path / "checkpoint.pt"
    with atomic_file(target) as staging:
        staging.write_bytes(b"first")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as staging:
            staging.write_bytes(b"sec")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"first"
    with pytest.raises(OSError, match=f"Could not write {target}.*free space"):
        with atomic_file(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]  # no staging left behind


def test_written_files_are_readable_like_ordinary_files(tmp_path):
    path = tmp_path / "results" / "out.json"
    write_text_atomically(path, "{}\n")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "{}\n" and stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [entry.name for entry in path.parent.iterdir()] == ["out.json"]


def test_only_staging_of_finished_processes_is_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{STAGING_PREFIX}{finished.stdout.strip()}-abc"
    alive = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-def"
    other = tmp_path / ".keep-me"
    for folder in (dead, alive, other):
        folder.mkdir()
    remove_abandoned_staging(tmp_path)
    assert not dead.exists() and alive.exists() and other.exists()
