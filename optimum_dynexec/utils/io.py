"""Writing folders so that a reader never sees half of one: the one place the package does it.

Everything is first written to a staging folder on the same file system, then moved into place with `os.replace`.
A staging folder is named after the process that writes it (`.dynexec-staging-<pid>-...`): a save killed half-way
(SIGKILL, power loss) leaves it behind, and the next save or load in that place removes it once that process is gone.
A write that fails (a full disk, a folder that is not writable) raises an `OSError` that names the destination and
leaves the destination as it was.

A destination that already exists is replaced only when nothing of value goes with it: it is empty, or it holds
nothing the new contents do not put back (a previous write of the same thing), and, when the caller says how to
recognise what it writes (`ours`), it is recognised. A user's folder passed by mistake is never deleted.
"""

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Union

STAGING_PREFIX = ".dynexec-staging-"


def remove_abandoned_staging(folder: Union[str, Path]) -> None:
    """Remove the staging folders in `folder` whose writing process no longer runs (interrupted saves)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.glob(f"{STAGING_PREFIX}*"):
        pid = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _process_is_running(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _process_is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _new_staging(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent))


def _write_error(destination: Path, error: BaseException) -> OSError:
    """An `OSError` that says where the write failed and what to do; the original error is chained."""
    try:
        free = f"{shutil.disk_usage(destination if destination.exists() else destination.parent).free / 2**20:.0f} MiB"
    except OSError:
        free = "unknown"
    code = error.errno if isinstance(error, OSError) and error.errno else errno.EIO
    return OSError(
        code,
        f"Could not write {destination}: {error} (free space there: {free}). Free disk space or choose another "
        "folder, then save again; nothing was changed at the destination.",
    )


@contextmanager
def atomic_directory(
    final_path: Union[str, Path],
    *,
    argument: Optional[str] = None,
    ours: Optional[Callable[[Path], bool]] = None,
    described_as: str = "what optimum-dynexec writes there",
    remedy: str = "pass a new or empty folder, or one this command wrote before",
) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends without error it replaces `final_path` in one step.

    On any exception the staging folder is removed and `final_path` is left as it was, so a crashed or interrupted
    write leaves nothing half-written that a later reader could mistake for a finished one.

    An existing `final_path` is never deleted unless it is safe to: `check_replaceable` refuses (ValueError naming
    `argument`, the folder and the fix) before the block when `ours(final_path)` is False for a folder that holds
    files, and after the block when the folder holds files the new contents do not put back; then the new contents
    are kept beside it (`<name>.new`, named in the error), since they may have taken long to make.
    """
    final_path = Path(final_path)
    check_replaceable(final_path, argument=argument, ours=ours, described_as=described_as, remedy=remedy)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(final_path.parent)
    staging = _new_staging(final_path.parent)
    try:
        with _write_failures_named(final_path):
            yield staging
        if final_path.exists():
            lost = files_not_rewritten(final_path, staging)
            if lost:
                kept = _free_sibling(final_path, ".new")
                os.replace(staging, kept)
                raise ValueError(
                    f"{argument or 'The destination'} {final_path} holds files this write would not put back "
                    f"({', '.join(lost)}): replacing it would delete them, so it was left as it was and the new "
                    f"contents were written to {kept}. Pass a new or empty folder, or move those files away first."
                )
            old = _new_staging(final_path.parent)
            os.replace(final_path, old / final_path.name)
            os.replace(staging, final_path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_replaceable(
    folder: Union[str, Path],
    *,
    argument: Optional[str] = None,
    ours: Optional[Callable[[Path], bool]] = None,
    described_as: str = "what optimum-dynexec writes there",
    remedy: str = "pass a new or empty folder, or one this command wrote before",
) -> None:
    """Raise ValueError, naming `argument` and the fix, if writing a new `folder` in one piece could delete a user's
    files: `folder` is a file, or it holds files and `ours(folder)` (how the caller recognises its own output) says
    it did not write them (the error says what `folder` should be, `described_as`, and what to do, `remedy`). A
    missing or empty folder passes. Call it before long work, so a mistake costs nothing."""
    folder = Path(folder)
    name = f"{argument} {folder}" if argument else str(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} is a file; pass a folder (a new or empty one, or one written by optimum-dynexec).")
    if ours is not None and _holds_files(folder) and not ours(folder):
        raise ValueError(
            f"{name} exists and holds files that are not {described_as}; it is left as it is: {remedy}."
        )


def files_not_rewritten(existing: Path, replacement: Path, limit: int = 5) -> List[str]:
    """Up to `limit` files under `existing` (relative paths) with no namesake under `replacement`: what replacing
    the one by the other would delete. Staging left by an interrupted write of ours does not count."""
    missing = []
    for folder, subfolders, files in os.walk(existing):
        subfolders[:] = sorted(name for name in subfolders if not _is_our_leftover(name))
        relative = Path(folder).relative_to(existing)
        for name in sorted(files):
            if not _is_our_leftover(name) and not (replacement / relative / name).exists():
                missing.append(str(relative / name))
                if len(missing) == limit:
                    return missing
    return missing


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(not _is_our_leftover(entry.name) for entry in folder.iterdir())


def _is_our_leftover(name: str) -> bool:
    # Staging folders and `.<name>.partial` files: what an interrupted write of this package leaves.
    return name.startswith(STAGING_PREFIX) or (name.startswith(".") and name.endswith(".partial"))


def _free_sibling(path: Path, suffix: str) -> Path:
    candidate, number = path.with_name(path.name + suffix), 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}{suffix}-{number}")
    return candidate


@contextmanager
def atomic_save_into(save_directory: Union[str, Path]) -> Iterator[Path]:
    """Yield a staging folder for files that go *into* `save_directory` (which may hold other files, as a
    `save_pretrained` destination does); when the block ends without error every entry written replaces its
    namesake in `save_directory`.

    On any exception nothing in `save_directory` changes, and a folder this call created is removed again.
    """
    save_directory = Path(save_directory)
    if save_directory.exists() and not save_directory.is_dir():
        raise ValueError(f"`save_directory` ({save_directory}) is a file; pass a folder.")
    created = not save_directory.exists()
    save_directory.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(save_directory)
    try:
        staging = _new_staging(save_directory)
    except OSError as error:
        raise _write_error(save_directory, error) from error
    try:
        with _write_failures_named(save_directory):
            yield staging
        for entry in staging.iterdir():
            destination = save_directory / entry.name
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(entry, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(save_directory, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _write_failures_named(destination: Path) -> Iterator[None]:
    """A write that fails inside the block (a full disk, a folder that is not writable) raises `_write_error`."""
    try:
        yield
    except (OSError, RuntimeError) as error:  # OpenVINO reports a failed write as a RuntimeError
        if _is_write_failure(error):
            raise _write_error(destination, error) from error
        raise


def _is_write_failure(error: BaseException) -> bool:
    """An OS-level write error, or OpenVINO's `save_model` failing on its output stream (a full disk)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.EFBIG)
    message = str(error)
    return "iostream error" in message or "Cannot open" in message and "for writing" in message


@contextmanager
def atomic_file(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a staging file beside `path` to write (by name, e.g. `torch.save`); when the block ends without error it
    replaces `path` in one step, readable as an ordinary file would be (the process's umask applies). On any exception
    the staging file is removed and `path` is left as it was: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        os.close(handle)
        with _write_failures_named(path):
            yield Path(staging)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Union[str, Path], text: str) -> None:
    """Write `text` (UTF-8) to the file `path` in one step (`atomic_file`)."""
    with atomic_file(path) as staging:
        staging.write_text(text, encoding="utf-8")
