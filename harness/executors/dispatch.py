"""Sending a run's symbols to Dask as tasks and getting their results back, in completion order.

A task is a run of consecutive symbols (harness.task.scan_symbols). Sizes come from cluster.plan:
with symbols_per_task: auto, a first (pilot) task per worker carries one symbol; once they are
back, the slowest of them gives the cost of a symbol, and the rest of the run is planned from it
and submitted at once, so the dashboard's Progress panel counts every task of the run. An integer
fixes the size, and the whole run is submitted at once.

Keys are ("scan", run_id, first symbol of the task): one task prefix, so the dashboard shows one
"scan" group and the scheduler's queuing stays on (dask/distributed#8671); the pilots' are
("pilot", ...), their own small bar, so that the "scan" bar appears with the whole rest of the run
and its total never changes (it jumped once, when the pilots were back). The Progress panel
counts the tasks the scheduler still knows; a task whose result the driver has fetched and released
is forgotten and leaves the panel, so the bar would never fill. So each task gets a `received` task
of no result that depends on it (ProgressMarks): the scheduler keeps a released task while a
dependent of it is kept, as "done" (released) with its result freed on the worker, and the driver
keeps the received tasks until the run ends. The panel's "scan" total is then twice the scan's
tasks from the moment they are submitted (once the pilots are back), and its done count grows to it.

Finished results are fetched in batches (one client.gather for up to GATHER_BATCH futures; a
finished result waits at most GATHER_WAIT_SECONDS for others, and not at all after the pilots or
when nothing else runs): a fetch per future costs the scheduler, the worker and the driver a round
trip each, which at symbols_per_task: 1 was about a third of Dask's whole cost per task
(BENCHMARKS.md). Closing the generator (a failure, Ctrl-C) cancels what is pending.

The end of the run (dask_run_all) runs harness.finish's jobs as "finish" tasks, kept on the panel
the same way: each job is scattered first (its own bar: NullJob, FinishJob, PathsJob, WindowJob,
FooterJob), then its task submitted; on a cluster that may not see the driver's disk their staged
chunks are sent to the workers too (ShippedChunks). A job whose worker died, or could not be
reached, runs again.

Dead workers. Dask re-runs the tasks of a worker that dies; a task whose workers died too often
comes back as KilledWorker. Dask blames every task the dying worker held, an innocent one queued
behind the guilty one included, so the driver runs a blamed task again as a *suspect*, alone: once
nothing else is running, one suspect at a time. A suspect that dies again is split in halves (each
a new suspect) until the one symbol that kills its worker is found and reported as that symbol's
failure; the others complete. (So such a symbol is reported at the end of the run.)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

from harness.errors import ScanError
from harness.staged_chunk import staged_files
from cluster.plan import TaskPlanner
from harness.task import ScanSettings, SymbolError, SymbolResult, scan_symbols

log = logging.getLogger("scan")

MAX_RESUBMITS = 3           # for a task whose finished result was lost with its worker
GATHER_BATCH = 16           # finished futures fetched with one client.gather
GATHER_WAIT_SECONDS = 0.05  # how long a finished result may wait for others to be fetched with it
GATHER_POLL_SECONDS = 0.005
GUESSED_SECONDS_PER_SYMBOL = 0.02  # for the plan when no pilot symbol could be measured

def received(result: Any) -> None:
    """A ProgressMarks task: keeps its finished dependency on the dashboard, at no memory cost."""
    return None


class ProgressMarks:
    """The run's `received` tasks (module docstring): one per task submitted, kept until release().

    A received task lost with its worker would make the scheduler run its scan task again for it:
    drop_lost() releases those (the driver has the result already), so a dead worker costs no
    rescans; the panel's total drops by them.
    """

    def __init__(self, client: Any):
        self.client = client
        self.futures: list[Any] = []

    def add(self, futures: Sequence[Any]) -> None:
        """A received task for each of `futures`, named after it (its key with "received" added)."""
        keys = [(*f.key, "received") if isinstance(f.key, tuple) else (f.key, "received") for f in futures]
        # priority: a worker runs a finished task's mark before its next queued task; at the same
        # priority the marks, submitted after their tasks, waited for the whole scan, and with them
        # the tasks' results in the workers' memory (make load: workers' peak PSS 434 MB, not 350)
        self.futures += self.client.map(received, futures, key=keys, priority=1)

    def keep(self, futures: Sequence[Any]) -> None:
        """Keep `futures` (the data a marked task was given, e.g. scattered) until release(): a
        task whose scattered input is forgotten is forgotten with it, and would leave the panel."""
        self.futures += list(futures)

    def drop_lost(self) -> None:
        for future in [f for f in self.futures if f.status == "lost"]:
            self.futures.remove(future)
            future.release()

    def release(self) -> None:
        for future in self.futures:
            future.release()
        self.futures = []


Task = tuple[int, ...]  # the indices (into the run's symbols) of one task's symbols


def split_into_tasks(indices: Sequence[int], sizes: Sequence[int]) -> list[Task]:
    """Consecutive runs of `indices` of the given sizes (which sum to len(indices))."""
    tasks, start = [], 0
    for size in sizes:
        tasks.append(tuple(indices[start:start + size]))
        start += size
    return tasks


class ScanFeed:
    """The scan's symbols sent to a Dask cluster as tasks, their results back as they finish.

        feed = ScanFeed(client, symbols, settings, TaskPlanner(workers=4))
        for i, result in feed.results(todo):   # (index into symbols, its SymbolResult)
            ...
        feed.tasks                             # tasks submitted (retries and suspects included)
        feed.bytes_received                    # the bytes of the results' arrays fetched

    planner: how the symbols are cut into tasks (cluster.plan.TaskPlanner: a fixed size, or auto
    with pilots first, module docstring). marks: if given,
    keeps every task on the dashboard (ProgressMarks); the caller releases it. cpu: what a task
    holds while it computes (harness.task.scan_symbol's; a LocalCluster's CPU slot). A task that fails as
    a whole (its worker died each time, or Dask could not run it) yields an error result for each
    of its symbols. With settings.stop_on_error a task stops at its first failing symbol, so fewer
    results than symbols can come back: the caller is about to stop. Closing the results
    generator (a failure, Ctrl-C) cancels what is pending.
    """

    def __init__(self, client: Any, symbols: Sequence[str], settings: ScanSettings, planner: TaskPlanner,
                 marks: ProgressMarks | None = None,
                 cpu: Callable[[], ContextManager[None]] | None = None):
        self.client, self.symbols, self.settings, self.marks = client, symbols, settings, marks
        self.cpu = {} if cpu is None else {"cpu": cpu}  # scan_symbols' own default: nothing held
        self.planner = planner
        self.run_id = uuid.uuid4().hex[:8]
        self.tasks = 0
        self.bytes_received = 0               # the results' arrays fetched (SymbolResult.nbytes)
        self.pending: dict[Any, tuple[Task, Any]] = {}  # key -> (task, future)
        self.resubmits: dict[Task, int] = {}
        self.suspects: deque[Task] = deque()  # blamed by KilledWorker: run again, one at a time
        self.retried: set[Task] = set()       # tasks that already ran as suspects
        self.rest: list[int] = []             # symbols left to plan once the pilots are back
        self.pilots_left: set[Task] = set()
        self.costs: list[float] = []          # CPU seconds of the symbols scanned so far
        self.again = iter(range(1, 1 << 62))  # a fresh key for every task submitted again
        self.queue: Any = None

    def results(self, todo: Sequence[int]) -> Iterator[tuple[int, SymbolResult]]:
        """Scan symbols[i] for every i in `todo`; (i, result) as results arrive. Once per feed: its
        task keys are made once per feed, and a key is never reused."""
        from distributed import as_completed

        if self.queue is not None:
            raise RuntimeError("a ScanFeed runs once; make another for another scan")

        self.queue = as_completed(loop=self.client.loop, raise_errors=False)  # the client's: it is no default
        sizes, pilots = self.planner.first(len(todo))
        tasks = split_into_tasks(todo, sizes)
        if pilots:
            self.pilots_left = set(tasks)
            self.rest = list(todo[len(tasks):])
        self._submit(tasks, kind="pilot" if pilots else "scan")
        try:
            for done in self._finished_batches():
                yield from self._collect(done)
                self._run_next_suspect()
                if self.marks is not None:
                    self.marks.drop_lost()
        finally:
            if self.pending:
                self.client.cancel([f for _, f in self.pending.values()])

    def _submit(self, tasks: Sequence[Task], again: str = "", kind: str = "scan") -> None:
        # A key is never reused: the scheduler may still hold the erred or lost task of an earlier
        # submission of the same symbols under it, and would hand that state to the new future.
        tag = f"{self.run_id}-{again}{next(self.again)}" if again else self.run_id
        keys = [(kind, tag, self.symbols[task[0]]) for task in tasks]
        futures = self.client.map(scan_symbols, [[self.symbols[i] for i in task] for task in tasks],
                                  settings=self.settings, key=keys, **self.cpu)
        self.pending.update((f.key, (task, f)) for f, task in zip(futures, tasks))
        if self.marks is not None:
            self.marks.add(futures)
        self.tasks += len(futures)
        self.queue.update(futures)

    def _finished_batches(self) -> Iterator[list[Any]]:
        """Finished futures in batches (module docstring: GATHER_BATCH, GATHER_WAIT_SECONDS)."""
        done: list[Any] = []
        deadline = 0.0
        for future in self.queue:
            if not done:
                deadline = time.monotonic() + GATHER_WAIT_SECONDS
            done.append(future)
            if future.status == "finished" and len(done) < GATHER_BATCH and not self.rest:
                # others still running may finish in a moment: fetch them together, but never
                # keep a result waiting more than GATHER_WAIT_SECONDS (nor the plan after pilots)
                while (not self.queue.has_ready() and len(self.pending) > len(done)
                       and time.monotonic() < deadline):
                    time.sleep(GATHER_POLL_SECONDS)
                if self.queue.has_ready():
                    continue
            yield done
            done = []

    def _plan_rest(self) -> None:
        cost = max(self.costs, default=GUESSED_SECONDS_PER_SYMBOL)
        sizes = self.planner.rest(len(self.rest), cost)
        log.info("Planned %d tasks for the other %d symbols (%.0f ms per symbol; %d down to %d symbols per task)",
                 len(sizes), len(self.rest), 1000 * cost, sizes[0], sizes[-1])
        self._submit(split_into_tasks(self.rest, sizes))
        self.rest = []

    def _run_next_suspect(self) -> None:
        if self.suspects and not self.pending:  # alone: a task dying beside it would blame it again
            task = self.suspects.popleft()
            self.retried.add(task)
            self._submit([task], again="suspect")

    def _failed(self, task: Task, message: str) -> list[SymbolResult]:
        return [SymbolResult(self.symbols[i], error=SymbolError(None, message)) for i in task]

    def _collect(self, done: list[Any]) -> list[tuple[int, SymbolResult]]:
        """The results of `done` (finished, erred, lost or cancelled futures); blamed, lost and
        cancelled tasks submitted again, as the module docstring says."""
        finished = {str(n): f for n, f in enumerate(done) if f.status == "finished"}
        # errors="skip": a future that errs or is cancelled meanwhile comes back missing; one whose
        # data was lost with its worker is recomputed by Dask before gather returns.
        values = self.client.gather(finished, errors="skip") if finished else {}
        out: list[tuple[int, SymbolResult]] = []
        for n, future in enumerate(done):
            task, _ = self.pending.pop(future.key)
            status, value = future.status, values.get(str(n))
            exc = future.exception() if status == "error" else None
            future.release()
            if status == "finished" and isinstance(value, list):
                results = value
                self.bytes_received += sum(r.nbytes for r in results)
                self.costs.extend(r.seconds for r in results if r.error is None and r.bars)
            elif exc is not None:  # scan_symbols returns a symbol's own errors: this one is Dask's
                if type(exc).__name__ != "KilledWorker":
                    results = self._failed(task, f"{type(exc).__name__}: {exc}")
                elif task not in self.retried:
                    self.suspects.append(task)
                    continue
                elif len(task) > 1:
                    half = len(task) // 2
                    self.suspects.extendleft([task[half:], task[:half]])
                    continue
                else:
                    results = self._failed(task, "its worker process died each time it ran this symbol, alone "
                                                 f"(Dask: {str(exc).split('. ')[0]})")
            elif self.resubmits.get(task, 0) < MAX_RESUBMITS:
                # Finished on a worker that died before its result was fetched (the data is lost),
                # or cancelled by the cluster: run it again; tasks are safe to run twice.
                self.resubmits[task] = self.resubmits.get(task, 0) + 1
                log.warning("Resubmitting the task of %s (its result was lost: %s)", self.symbols[task[0]], status)
                self._submit([task], again="retry")
                continue
            else:
                results = self._failed(task, f"its result was lost {MAX_RESUBMITS + 1} times (status {status})")
            out.extend(zip(task, results))
            self.pilots_left.discard(task)
        if self.rest and not self.pilots_left:  # the slowest pilot sets the plan (an IPO's short history would not)
            self._plan_rest()
        return out


FINISH_ATTEMPTS = 3  # a job whose worker died is run again (jobs write nothing: they return bytes)
WORKER_RETURN_SECONDS = 120  # how long a retry waits for a worker when none is left
SHIP_BATCH = 8       # staged chunks sent with one scatter (each a few MB): few round trips, little memory


class ShippedChunks:
    """A run's staged chunks sent to a cluster whose workers may not see the driver's disk (a remote
    scheduler's, a caller's client's): each chunk's files (harness.staged_chunk.staged_files) scattered
    once, when a job first needs it, and kept on the workers for the other jobs until release().
    The driver reads one chunk at a time, so its memory does not grow with the staging folder."""

    def __init__(self, client: Any, staging: Path):
        self.client, self.staging = client, staging
        self.futures: dict[int, Any] = {}
        self.bytes_sent = 0

    def for_job(self, job: Any, worker: str | None = None) -> dict[int, Any]:
        """chunk -> its files' future, for every chunk in job.chunks (reads_chunks); the chunks not
        sent yet go to `worker` (the job's), SHIP_BATCH chunks per scatter."""
        missing = [chunk for chunk in job.chunks if chunk not in self.futures]
        for start in range(0, len(missing), SHIP_BATCH):
            batch = missing[start:start + SHIP_BATCH]
            files = [staged_files(self.staging, chunk) for chunk in batch]
            self.bytes_sent += sum(len(data) for f in files for data in f.values())
            futures = self.client.scatter(files, hash=False, workers=[worker] if worker else None)
            self.futures.update(zip(batch, futures))
        return {chunk: self.futures[chunk] for chunk in job.chunks}

    def forget_lost(self) -> None:
        """Drop the chunks lost with a worker that died, so that for_job() sends them again."""
        lost = [chunk for chunk, future in self.futures.items() if future.status != "finished"]
        for chunk in lost:
            self.futures.pop(chunk).release()

    def release(self) -> None:
        for future in self.futures.values():
            future.release()
        self.futures = {}


def reads_chunks(job: Any) -> bool:
    """Whether `job` reads staged chunks: it says which in a `chunks` attribute (harness.finish's
    NullJob and FinishJob; the summary jobs have none)."""
    return hasattr(job, "chunks")


def dask_run_all(client: Any, function: Callable[..., Any], jobs: Sequence[Any], marks: ProgressMarks | None = None,
                 shipped: ShippedChunks | None = None) -> list[Any]:
    """function(job) for every job as one task each on `client`'s cluster; the results in job order.
    Each job is scattered to the workers first (a job may hold tens of MB: a split detector's
    events), then its task submitted.

    For the end of a run (harness.finish's jobs). shipped: the staged chunks of the jobs that read
    some (reads_chunks) go to the workers through Dask, as function(job, {chunk: its files}); job n
    is placed on worker n (of the workers in address order, round) so that the jobs spread over
    the cluster and its chunks go where it runs; without it the workers read
    the driver's staging folder (a LocalCluster of this run). Waits for every task before raising
    the first job's error. A job whose worker died (KilledWorker: the cluster allows no
    retries of its own), or whose shipped chunks were lost with theirs, is submitted again (the
    lost chunks sent again), up to FINISH_ATTEMPTS times in all: a worker killed late
    in the scan is only declared dead a heartbeat later, and the first jobs of the end may have
    been given to it. Then it is a ScanError. Keys are ("finish", run_id, attempt, job): the
    dashboard shows the end of the run as its own group, kept there by `marks` if given.
    """
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    results: dict[int, Any] = {}
    for attempt in range(FINISH_ATTEMPTS):
        todo = [n for n in range(len(jobs)) if n not in results]
        try:
            client.wait_for_workers(1, timeout=WORKER_RETURN_SECONDS)  # a nanny may be restarting them all
        except TimeoutError:
            raise ScanError(f"no Dask worker left to finish the detectors (none came back in "
                            f"{WORKER_RETURN_SECONDS} s); the scanned symbols are kept: rerun with "
                            "--resume") from None
        sent: dict[int, Any] = {}
        futures: dict[int, Any] = {}
        try:
            if shipped:
                shipped.forget_lost()
                workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
                for n in todo:
                    worker = workers[n % len(workers)]
                    sent[n] = client.scatter([jobs[n]], hash=False, workers=[worker])[0]
                    staged = (shipped.for_job(jobs[n], worker),) if reads_chunks(jobs[n]) else ()
                    futures[n] = client.submit(function, sent[n], *staged, key=("finish", run_id, attempt, n),
                                               workers=[worker], allow_other_workers=True)
            else:
                sent = dict(zip(todo, client.scatter([jobs[n] for n in todo], hash=False)))
                futures = {n: client.submit(function, sent[n], key=("finish", run_id, attempt, n)) for n in todo}
        except OSError as exc:  # a worker they went to died, not yet declared dead: send them again
            log.warning("Sending the end of the run's jobs to the workers failed (%s); sending them again", exc)
            client.cancel(list(futures.values()))
            for future in [*futures.values(), *sent.values()]:
                future.release()
            continue
        if marks is not None:
            marks.add(list(futures.values()))
            marks.keep(list(sent.values()))
        try:
            # every future done (finished, erred or cancelled: looked at below); distributed.wait
            # would need the process's default client, which the scan's own is not
            for _ in as_completed(list(futures.values()), loop=client.loop):
                pass
            died = []
            for n, future in futures.items():
                if future.status == "cancelled" or (future.status == "error" and
                                                    type(future.exception()).__name__ == "KilledWorker"):
                    died.append(n)  # cancelled: a chunk it needed was lost with its worker
                else:
                    results[n] = future.result()  # raises the job's own error
        finally:  # cancelling a finished task would cancel its received task too (ProgressMarks)
            client.cancel([f for f in futures.values() if f.status != "finished"])
            for future in [*futures.values(), *(sent.values() if marks is None else ())]:
                future.release()
        if not died:
            return [results[n] for n in range(len(jobs))]
    raise ScanError("a worker process died while finishing the detectors, again and again; the scanned symbols "
                    "are kept: rerun with --resume")
