"""How a run's symbols are cut into Dask tasks. Pure: no Dask, no I/O.

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

import math

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


def fixed_task_sizes(symbols: int, per_task: int) -> list[int]:
    """`per_task` symbols per task (config symbols_per_task: N), the last task taking what is left."""
    if per_task < 1:
        raise ValueError(f"per_task must be >= 1, got {per_task}")
    return [per_task] * (symbols // per_task) + ([symbols % per_task] if symbols % per_task else [])
