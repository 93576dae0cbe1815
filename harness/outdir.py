"""The output folder's own names, and the lock that allows one run per folder.

Kept free of heavy imports: config.py and detectors.py check names against RESERVED_NAMES before
anything is loaded, and run.py takes the lock before any process starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from pathlib import Path
from typing import Iterator

from harness.errors import FolderInUse, OutputError

# The top-level files a run may write into <out_dir>. A new one is added here, then passed to
# harness.final_files.FinalFiles; detector folders can never take one of these names.
RUN_FILES = ("summary.csv", "market.parquet", "paths.csv", "quantiles.csv", "report.html", "run.json")
DETECTOR_FILES = ("events.parquet", "forward.parquet")
LOCK_FILE = ".symbol-scan.lock"
STAGING = ".symbol-scan-staging"
STAGING_MARKER = "made-by-symbol-scan"  # a staging folder without it is not ours and is never deleted
RESERVED_NAMES = (*RUN_FILES, LOCK_FILE, STAGING)


def os_reason(exc: OSError) -> str:
    """The system's words for an OSError ("No space left on device"), without paths or errno."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _lock_holder(path: Path) -> str:
    """What the lock file says about the run holding it: "pid N, started T"."""
    try:
        return path.read_text().strip() or "it is just starting"
    except OSError:
        return "pid unknown"


def _acquire(path: Path) -> int:
    """An fd of `path` with an exclusive flock on it, or FolderInUse.

    The holder removes the file (and the folder, if it made it and it stayed empty) on its way out;
    one who opened the file just before that holds a lock on a removed file, sees that the path no
    longer names it, and tries again.
    """
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUse(f"output folder {path.parent} is in use by another run ({_lock_holder(path)}); "
                              "wait for it to finish, or give this run another --out") from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


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
        if fd >= 0:
            path.unlink()  # while the lock is held, so no other run can be holding this file
        for folder in made:  # innermost first; stops at the first that is not empty
            folder.rmdir()
    if fd >= 0:
        os.close(fd)
