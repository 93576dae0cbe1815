"""CPU slots: at most N processes of one machine run the scan's CPU work at the same time.

A LocalCluster with more workers than the machine has cores (the default 8 workers on a 2-core
laptop) would otherwise run 8 CPU-bound processes on 2 cores, and they slow each other down by
sharing caches (measured: 20-70% more CPU for the same detector work, BENCHMARKS.md). With slots,
every worker still takes tasks, but at most N of them compute at once, N = cores.

A slot is a unit of a System V semaphore taken with SEM_UNDO: the waiters sleep in the kernel (no
polling), and the kernel gives a dead process's unit back, so a worker killed while it holds a
slot (kill -9, the OOM killer) never keeps it. Linux only; elsewhere make_slots returns None and
nothing is limited. The driver creates the semaphore and removes it when the cluster closes; a
waiter whose semaphore was removed goes on without a slot.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import sys
from typing import Iterator

IPC_PRIVATE, IPC_CREAT, IPC_RMID, SETVAL, SEM_UNDO = 0, 0o1000, 0, 16, 0x1000  # Linux values


class _SemBuf(ctypes.Structure):
    _fields_ = [("sem_num", ctypes.c_ushort), ("sem_op", ctypes.c_short), ("sem_flg", ctypes.c_short)]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def make_slots(slots: int) -> int | None:
    """A new semaphore with `slots` units; its id (what cpu_slot() takes), or None where unsupported."""
    libc = _libc()
    if libc is None:
        return None
    semid = libc.semget(IPC_PRIVATE, 1, IPC_CREAT | 0o600)
    if semid < 0:
        return None
    if libc.semctl(semid, 0, SETVAL, ctypes.c_int(slots)) < 0:
        libc.semctl(semid, 0, IPC_RMID)
        return None
    return semid


def remove_slots(semid: int | None) -> None:
    """Remove the semaphore (its waiters go on without a slot)."""
    libc = _libc()
    if semid is not None and libc is not None:
        libc.semctl(semid, 0, IPC_RMID)


def _semop(libc: ctypes.CDLL, semid: int, op: int) -> bool:
    """One semop; False when the semaphore no longer exists."""
    buf = _SemBuf(0, op, SEM_UNDO)
    while libc.semop(semid, ctypes.byref(buf), 1) < 0:
        code = ctypes.get_errno()
        if code == errno.EINTR:
            continue
        if code in (errno.EIDRM, errno.EINVAL):
            return False
        raise OSError(code, f"semop on CPU slots {semid}")
    return True


@contextlib.contextmanager
def cpu_slot(semid: int | None) -> Iterator[None]:
    """Hold one slot of semaphore `semid` (from make_slots) for the block; no limit when None."""
    libc = _libc() if semid is not None else None
    held = libc is not None and _semop(libc, semid, -1)
    try:
        yield
    finally:
        if held:
            _semop(libc, semid, +1)
