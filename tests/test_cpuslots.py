"""CPU slots: never more holders than slots, across real processes; a killed holder frees its slot."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from cluster.cpuslots import cpu_slot, make_slots, remove_slots


def _hold(slots, log, seconds):
    with cpu_slot(slots):
        log.put(("in", time.monotonic()))
        time.sleep(seconds)
        log.put(("out", time.monotonic()))


@pytest.fixture()
def slots(request):
    semid = make_slots(request.param)
    assert semid is not None, "System V semaphores should work on Linux"
    yield semid
    remove_slots(semid)


@pytest.mark.parametrize("slots", [2], indirect=True)
def test_at_most_as_many_holders_as_slots(slots):
    context = multiprocessing.get_context("fork")
    log = context.Queue()
    procs = [context.Process(target=_hold, args=(slots, log, 0.2)) for _ in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    events = sorted((log.get(timeout=5) for _ in range(10)), key=lambda e: (e[1], e[0] == "in"))
    inside = most = 0
    for kind, _ in events:
        inside += 1 if kind == "in" else -1
        most = max(most, inside)
    assert most == 2


@pytest.mark.parametrize("slots", [1], indirect=True)
def test_a_killed_holder_frees_its_slot_and_a_removed_semaphore_frees_its_waiters(slots):
    context = multiprocessing.get_context("fork")
    # The holder gets a queue of its own: killed just after a put, it may still hold the queue's
    # write lock, which would block every later put to that queue.
    holder_log, log = context.Queue(), context.Queue()
    holder = context.Process(target=_hold, args=(slots, holder_log, 60))
    holder.start()
    assert holder_log.get(timeout=10)[0] == "in"
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    after = context.Process(target=_hold, args=(slots, log, 0))
    after.start()  # waits forever unless the kernel gave the dead holder's unit back
    assert log.get(timeout=10)[0] == "in" and log.get(timeout=10)[0] == "out"
    after.join(10)
    with cpu_slot(slots):
        waiter = context.Process(target=_hold, args=(slots, log, 0))
        waiter.start()
        time.sleep(0.2)
        assert log.empty(), "the only slot is held here"
        remove_slots(slots)
        waiter.join(10)
        assert log.get(timeout=5)[0] == "in", "a waiter goes on once the semaphore is gone"
    with cpu_slot(None):
        pass
