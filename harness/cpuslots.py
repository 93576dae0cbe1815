"""CPU slots: at most N processes of one machine run detector code at the same time.

A LocalCluster with more workers than the machine has cores (the default 8 workers on a 2-core
laptop) would otherwise run 8 CPU-bound processes on 2 cores, and they slow each other down by
sharing caches (measured: 20-70% more CPU for the same detector work, BENCHMARKS.md). With slots,
every worker still reads its symbols (reads can wait on I/O, from s3:// say) but detector code
runs in at most N of them at once, N = cores.

A slot is an exclusive flock on one of N files in a folder the driver makes; the kernel releases
it when its process ends, even by SIGKILL, so a dead worker never keeps one. Waiters queue on one
more lock file, blocking, so that only the one at the head of the queue polls the slots.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

QUEUE = "queue"
POLL_SECONDS = 0.0005


def make_slots(folder: Path, slots: int) -> tuple[str, int]:
    """Create the lock files of `slots` slots in `folder`; returns what cpu_slot() takes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (QUEUE, *(f"slot-{i}" for i in range(slots))):
        (folder / name).touch()
    return str(folder), slots


@contextlib.contextmanager
def cpu_slot(slots: tuple[str, int] | None) -> Iterator[None]:
    """Hold one slot of `slots` (from make_slots) for the block; no limit when `slots` is None."""
    if slots is None:
        yield
        return
    folder, count = slots
    held = -1
    queue = os.open(os.path.join(folder, QUEUE), os.O_RDWR)
    try:
        fcntl.flock(queue, fcntl.LOCK_EX)  # wait in line, asleep
        while held < 0:
            for i in range(count):
                fd = os.open(os.path.join(folder, f"slot-{i}"), os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                held = fd
                break
            else:
                time.sleep(POLL_SECONDS)
    finally:
        os.close(queue)  # lets the next in line poll
    try:
        yield
    finally:
        os.close(held)
