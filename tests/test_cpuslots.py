"""CPU slots: never more holders than slots, across real processes; a killed holder frees its slot."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from harness.cpuslots import cpu_slot, make_slots


def _hold(slots, log, seconds):
    with cpu_slot(slots):
        log.put(("in", time.monotonic()))
        time.sleep(seconds)
        log.put(("out", time.monotonic()))


def test_at_most_as_many_holders_as_slots(tmp_path):
    slots = make_slots(tmp_path / "slots", 2)
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


def test_a_killed_holder_frees_its_slot_and_no_limit_without_slots(tmp_path):
    slots = make_slots(tmp_path / "slots", 1)
    context = multiprocessing.get_context("fork")
    log = context.Queue()
    holder = context.Process(target=_hold, args=(slots, log, 60))
    holder.start()
    assert log.get(timeout=10)[0] == "in"
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    started = time.monotonic()
    with cpu_slot(slots):
        assert time.monotonic() - started < 5
    with cpu_slot(None):
        pass
