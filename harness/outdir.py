"""The output folder's own names, and the lock that allows one run per folder.

Kept free of heavy imports: config.py and detectors.py check names against RESERVED_NAMES before
anything is loaded, and run.py takes the lock before any process starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import Iterator

from harness.errors import ConfigError, FolderInUse, OutputError

# The top-level files a run may write into <out_dir>. A new one is added here, then passed to
# harness.final_files.FinalFiles; detector folders can never take one of these names. (The files in
# a detector's folder are harness.detector_files'.)
# REUSE_RECORD: what the next run may keep of this one (harness.reuse); hidden, as it is for the tool.
REUSE_RECORD = ".symbol-scan-reuse.json"
RUN_FILES = ("summary.csv", "market.parquet", "paths.csv", "quantiles.csv", "report.html", "run.json", REUSE_RECORD)
LOCK_FILE = ".symbol-scan.lock"
STAGING = ".symbol-scan-staging"
STAGING_MARKER = "made-by-symbol-scan"  # a staging folder without it is not ours and is never deleted
RESERVED_NAMES = (*RUN_FILES, LOCK_FILE, STAGING)


def os_reason(exc: OSError) -> str:
    """The system's words for an OSError ("No space left on device"), without paths or errno."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _lock_holder(fd: int) -> str:
    """What the lock file open at `fd` says about the run holding it: "pid N, started T"."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "it is just starting"
    except OSError:
        return "pid unknown"


# The lock file is opened without following a symlink (a link planted in a shared folder would have
# the run truncate the file it points to), without blocking on a FIFO, and closed in child processes.
OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _not_a_lock_file(path: Path) -> ConfigError:
    """The one line for a lock path that holds something else than a lock file of ours."""
    return ConfigError(f"config key 'out_dir': {path} is {_what_is(path)}, not this tool's lock file; it is left "
                       "alone: remove it and run again")


def _what_is(path: Path) -> str:
    """"a symlink to X", "a folder", "a file with 2 hard links", else "not a regular file"."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            return f"a symlink to {os.readlink(path)}"
    except OSError:
        return "not a regular file"
    if stat.S_ISDIR(info.st_mode):
        return "a folder"
    return f"a file with {info.st_nlink} hard links" if stat.S_ISREG(info.st_mode) else "not a regular file"


def _is_lock_file(info: os.stat_result) -> bool:
    """A regular file with no other name: a hard link to someone's file would be truncated too."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _acquire(path: Path) -> int:
    """An fd of `path` with an exclusive flock on it, or FolderInUse; ConfigError when `path` is a
    symlink, a folder, a FIFO or a file with other names (never opened for writing, never removed).

    The holder removes the file (and the folder, if it made it and it stayed empty) on its way out;
    one who opened the file just before that holds a lock on a removed file, sees that the path no
    longer names it, and tries again.
    """
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, OPEN_FLAGS, 0o644)
        except FileNotFoundError:  # the folder was removed just now
            continue
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):  # a link, folder, socket
                raise _not_a_lock_file(path) from None
            raise
        if not _is_lock_file(os.fstat(fd)):  # a FIFO, a device, another name of someone's file
            os.close(fd)
            raise _not_a_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise FolderInUse(f"output folder {path.parent} is in use by another run ({holder}); "
                              "wait for it to finish, or give this run another --out") from None
        if _still_named(path, fd):
            return fd
        os.close(fd)


def _still_named(path: Path, fd: int) -> bool:
    """Whether `path` (not followed if a link) is still the file open at `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def hold_output_folder(out_dir: str) -> Iterator[None]:
    """Hold <out_dir>'s lock for the life of the block: one run per output folder.

    flock, so the kernel releases the lock when the process ends, even by SIGKILL: a killed run
    never blocks the next one. The lock file holds the holder's pid and start time for the message
    another run gets. When the block ends the lock file is removed, and so are the folders made
    for it if they are still empty (a run stopped by a mistake leaves nothing behind).
    """
    path = Path(out_dir) / LOCK_FILE
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    fd = -1
    try:
        fd = _acquire(path)
        started = dt.datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {started}\n".encode())
    except OSError as exc:
        _release(path, fd, made)
        target = path if path.parent.is_dir() else path.parent
        raise OutputError(f"cannot write {target}: {os_reason(exc)}; nothing was written") from None
    try:
        yield
    finally:
        _release(path, fd, made)


def _release(path: Path, fd: int, made: list[Path]) -> None:
    with contextlib.suppress(OSError):
        if fd >= 0 and _still_named(path, fd):  # never what someone put in its place
            path.unlink()  # while the lock is held, so no other run can be holding this file
        for folder in made:  # innermost first; stops at the first that is not empty
            folder.rmdir()
    if fd >= 0:
        os.close(fd)
