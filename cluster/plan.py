"""How a run's work is sized, in one place: the scan's tasks and the end's units and pieces. Pure:
no Dask, no I/O, no harness (the records that carry a plan are the callers': harness.executors.
dispatch submits the tasks, harness.finish.plan_finish makes the jobs).

The scan's tasks.

A symbol costs ~10-40 ms of detector CPU, too little for one Dask task (each costs a few ms of
scheduler, comm and worker CPU; Dask's guidance is tasks of 100 ms or more). So a task carries a
run of consecutive symbols, sized like guided self-scheduling ("factoring"): each task takes
1/(TASKS_PER_WORKER x workers) of the symbols still unplanned, so tasks start big and shrink as the
end nears, and the last ones are small enough that every worker finishes at about the same time.
Two bounds from the measured cost per symbol: a task is never planned longer than MAX_TASK_SECONDS
(a lost worker loses at most that much work, and progress moves smoothly), and, but for the very
last task, never shorter than MIN_TASK_SECONDS (Dask's cost stays a few percent of the task's).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

TASKS_PER_WORKER = 2     # tasks in flight per worker while the work is shared out
MIN_TASK_SECONDS = 0.2   # Dask's per-task cost (~5-10 ms of CPU) is then a few percent
MAX_TASK_SECONDS = 4.0   # bounds the work lost with a dead worker and the jumps of progress


def plan_task_sizes(symbols: int, workers: int, seconds_per_symbol: float) -> list[int]:
    """Sizes of consecutive tasks that cover `symbols` symbols once, in order.

    workers: worker threads that run tasks at once (>= 1). seconds_per_symbol: the measured (or
    guessed) cost of one symbol; 0 or less counts as free, which makes tasks as big as the
    guided rule allows.
    Sizes are >= 1 and non-increasing, sum to `symbols`; each is
    clamp(ceil(left / (TASKS_PER_WORKER * workers)), smallest, largest), where smallest/largest
    are the symbol counts of MIN_TASK_SECONDS / MAX_TASK_SECONDS at that cost; the last one is
    what is left. No symbols: an empty plan.
    """
    if symbols < 0 or workers < 1:
        raise ValueError(f"need symbols >= 0 and workers >= 1, got {symbols}, {workers}")
    if seconds_per_symbol > 0:
        smallest = max(1, math.ceil(MIN_TASK_SECONDS / seconds_per_symbol))
        largest = max(smallest, math.floor(MAX_TASK_SECONDS / seconds_per_symbol))
    else:
        smallest, largest = 1, symbols or 1
    sizes, left = [], symbols
    while left:
        size = min(max(math.ceil(left / (TASKS_PER_WORKER * workers)), smallest), largest, left)
        sizes.append(size)
        left -= size
    return sizes


@dataclasses.dataclass(frozen=True)
class TaskPlanner:
    """How the scan's symbols are cut into tasks, the plan a feed submits (harness.executors.
    dispatch.ScanFeed): with a fixed size (symbols_per_task: N) every task at once; else (auto) a
    pilot of one symbol per worker first, then the rest sized from the slowest pilot's cost."""

    workers: int                       # tasks the cluster runs at once (its worker threads)
    symbols_per_task: int | None = None  # None: auto

    def first(self, symbols: int) -> tuple[list[int], bool]:
        """The sizes of the tasks submitted at once for `symbols` symbols, and whether they are
        pilots (the rest is planned by rest() once they are back)."""
        if self.symbols_per_task is None:
            return [1] * min(self.workers, symbols), True
        return fixed_task_sizes(symbols, self.symbols_per_task), False

    def rest(self, symbols: int, seconds_per_symbol: float) -> list[int]:
        """The sizes of the tasks after the pilots (plan_task_sizes)."""
        return plan_task_sizes(symbols, self.workers, seconds_per_symbol)


def fixed_task_sizes(symbols: int, per_task: int) -> list[int]:
    """`per_task` symbols per task (config symbols_per_task: N), the last task taking what is left."""
    if per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {per_task}")
    return [per_task] * (symbols // per_task) + ([symbols % per_task] if symbols % per_task else [])


# ---------------------------------------------------------------- the end of the run
#
# A detector is cut into units, runs of consecutive staged chunks of about FINISH_UNIT_COST
# (chunk_ranges; a rare detector is one unit, the busiest several). The units depend only on the
# data and the config, never on the number of workers: a unit's path sums are added up from zero,
# and a detector's units in unit order, so the paths have the same bits in every mode. The units
# go into one job per process (plan_pieces): whole detectors where that balances the jobs, else a
# detector's consecutive units split into pieces in several jobs.

# A detector's fixed cost per staged chunk, counted in events, for cutting detectors into units
# and units into jobs. Measured per piece on a serial run at 5,000 x 20 years (BENCHMARKS.md):
# ~8.6 us per event and ~2.8 ms per chunk. (1,200 overweighted the rare detectors: a 2-worker end
# planned as equal took 8.8 s and 7.0 s.)
EVENTS_PER_CHUNK_COST = 330
# The cost of a unit (~1.8 s at ~9 us per event): small enough that the busiest detector of a
# 5,000-symbol run is several units, large enough that a unit's fixed costs (its writers, its
# paths' sums: dates x offsets numbers) stay small. A constant, not derived from the number of
# workers: the units decide how the paths' sums are added up, so they must not depend on it.
FINISH_UNIT_COST = 200_000


def chunk_ranges(chunk_costs: Sequence[int], unit_cost: int) -> list[tuple[int, int]]:
    """Chunks 0 .. len(chunk_costs) - 1 cut into consecutive ranges (first, last + 1) of about
    `unit_cost` each: ceil(total / unit_cost) ranges, at least one and at most one per chunk, cut
    after the first chunk at which the running cost reaches each multiple of total / ranges (in
    integers: the same cuts on every machine). No chunks: no ranges."""
    if not len(chunk_costs):
        return []
    running = np.cumsum(np.asarray(chunk_costs, dtype=np.int64))
    total = int(running[-1])
    count = min(len(chunk_costs), max(1, -(-total // max(1, unit_cost))))
    cuts = np.searchsorted(running * count, total * np.arange(1, count, dtype=np.int64)) + 1
    edges = [0, *np.unique(np.clip(cuts, 1, len(chunk_costs) - 1)).tolist(), len(chunk_costs)]
    return list(zip(edges, edges[1:]))


def plan_pieces(unit_costs: Sequence[Sequence[int]], jobs: int) -> list[list[tuple[int, int, int]]]:
    """Detectors' units (unit_costs[d]: the costs of detector d's units, in order) put into at
    most `jobs` jobs of about equal cost, as pieces (d, first unit, last unit + 1) of consecutive
    units; each job's pieces sorted.

    Detectors go largest first. A detector's first unit goes to the job with the least cost so far
    (ties: the one with fewer pieces, then the lower number); each next unit stays in the same job
    if it fits there (the job's cost stays within the mean job cost plus half that unit) or if no
    other job costs less so far; else the detector is split and the unit starts a piece in the
    least-loaded other job. So a detector is split only where balance needs it, into few pieces
    (a split detector costs joins), and two consecutive pieces are never in one job. Every unit is
    in exactly one piece; no job is empty; the same costs always give the same pieces. No units:
    no jobs.
    """
    total = sum(sum(costs) for costs in unit_costs)
    count = max(1, min(jobs, sum(len(costs) for costs in unit_costs)))
    loads = [0] * count
    pieces: list[list[tuple[int, int, int]]] = [[] for _ in loads]

    def least_loaded(but: int | None = None) -> int | None:
        return min((j for j in range(count) if j != but), key=lambda j: (loads[j], len(pieces[j]), j), default=None)

    for d in sorted(range(len(unit_costs)), key=lambda d: (-sum(unit_costs[d]), d)):
        current = None
        for unit, cost in enumerate(unit_costs[d]):
            if current is None:
                job = least_loaded()
            else:
                fits = 2 * count * (loads[current] + cost) <= 2 * total + count * cost  # in integers
                other = least_loaded(but=current)
                job = current if fits or other is None or loads[current] <= loads[other] else other
            if job == current:
                first = pieces[job][-1][1]
                pieces[job][-1] = (d, first, unit + 1)
            else:
                pieces[job].append((d, unit, unit + 1))
            loads[job] += cost
            current = job
    return [sorted(job) for job in pieces if job]
