"""Scaling benchmark: the Dask scan against serial, ProcessPoolExecutor and the hardware's limit.

    python benchmarks/scaling.py [--symbols 400] [--years 10] [--workers 1,2,4,8]

Every configuration runs the real driver (harness.run.run_scan: read, detect, forward returns,
ordered flushes, final files, summary) in a fresh child process, so that each one's driver peak
RSS is its own. Modes, all side by side in one invocation:
- serial:  workers 1, the in-process reference path;
- dask:    the LocalCluster scan at N workers (default: one future per symbol), N = 1 included;
- dask/K:  the same with symbols_per_task K (--symbols-per-task, default 4; 1 leaves it out);
- ppe:     the same worker function on concurrent.futures.ProcessPoolExecutor(N), consumed with
           as_completed, behind the same driver (plugged in through run_scan's open_results);
- limit:   N independent OS processes started together, each running the serial path over 1/N of
           the symbols: what the cores do with zero coordination.
Scan seconds exclude cluster/pool start-up, which is reported on its own. "detector CPU s" sums the
detectors' own thread CPU (run.json cpu_seconds): it stays flat when a mode's extra time is the
executor's overhead and grows when the cores are oversubscribed (caches shared by more processes
than cores). It also measures
read_symbol_data against bare pyarrow reads and Dask's per-task overhead (no-op tasks per second).
Results: a printed table, JSON in benchmarks/results/. It never asserts anything about time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness.detectors import REGISTERED  # noqa: E402  (every baseline and variant)

DETECTORS = list(REGISTERED)


def _noop(x=None):
    return x


# ---------------------------------------------------------------- child side: one measurement

def ppe_execute(workers: int):
    """An open_results stand-in for run_scan: the same scan_symbol on a ProcessPoolExecutor."""
    from harness.task import scan_symbol

    @contextlib.contextmanager
    def open_results(cfg, symbols, first, task, info):
        t0 = time.time()
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            list(pool.map(_noop, range(workers)))  # start every process before timing the scan
            info["cluster_start_seconds"] = round(time.time() - t0, 3)
            futures = {pool.submit(scan_symbol, symbols[i], task): i for i in range(first, len(symbols))}

            def results():
                for future in concurrent.futures.as_completed(futures):
                    yield futures[future], future.result()
            try:
                yield results()
            finally:
                for future in futures:
                    future.cancel()
    return open_results


def child(args: argparse.Namespace) -> None:
    import logging

    from harness.config import load_config
    from harness.run import execute, execute_on_dask, run_scan
    logging.basicConfig(level=logging.WARNING)
    overrides = {"workers": args.workers if args.mode in ("dask", "ppe") else 1, "out_dir": args.out,
                 "dashboard_address": "127.0.0.1:0", "symbols_per_task": args.per_task}
    if args.subset:
        overrides["symbols"] = args.subset.split(",")
    cfg = load_config({"ohlcv_path": args.data, "detectors": DETECTORS, "flush_every": 50}, overrides)
    opener = {"ppe": ppe_execute(args.workers), "dask": execute_on_dask}.get(args.mode, execute)
    began = time.time()
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        info = run_scan(cfg, open_results=opener)
    ended = time.time()
    print(json.dumps({"began": began + info["cluster_start_seconds"], "ended": ended,
                      "startup": info["cluster_start_seconds"], "detector_cpu": sum(info["cpu_seconds"].values()),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# ---------------------------------------------------------------- parent side

def run_child(mode: str, workers: int, data: str, out: str, subset: str = "", per_task: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", mode, "--workers-n", str(workers), "--data", data, "--out", out,
           "--per-task", str(per_task)]
    if subset:
        cmd += ["--subset", subset]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{stderr}")
    return json.loads(stdout.strip().splitlines()[-1])


def measure(mode: str, workers: int, data: str, symbols: list[str], tmp: Path, per_task: int = 1) -> dict:
    if mode != "limit":
        r = collect(run_child(mode, workers, data, str(tmp / f"{mode}-{workers}-{per_task}"), per_task=per_task))
        return {"scan_seconds": r["ended"] - r["began"], "startup_seconds": r["startup"], "rss_mb": r["rss_mb"],
                "detector_cpu_seconds": r["detector_cpu"]}
    shares = [symbols[i::workers] for i in range(workers)]
    procs = [run_child("serial", 1, data, str(tmp / f"limit-{workers}-{i}"), ",".join(share))
             for i, share in enumerate(shares) if share]
    results = [collect(p) for p in procs]
    return {"scan_seconds": max(r["ended"] for r in results) - min(r["began"] for r in results),
            "startup_seconds": 0.0, "rss_mb": max(r["rss_mb"] for r in results),
            "detector_cpu_seconds": sum(r["detector_cpu"] for r in results)}


def micro_read(data: str, symbols: list[str]) -> dict:
    import pyarrow.parquet as pq

    from harness.io import read_symbol_data
    files = [next(Path(data, f"symbol={s}").glob("*.parquet")) for s in symbols]
    single = [(s, f) for s, f in zip(symbols, files) if len(list(f.parent.iterdir())) == 1][:200]

    readers = {"ours": lambda s, f: read_symbol_data(s, data, 10_000),
               "bare": lambda s, f: pq.read_table(f),
               "bare_pandas": lambda s, f: pq.read_table(f).to_pandas()}
    best = dict.fromkeys(readers, float("inf"))
    for _ in range(7):  # interleaved, so that a noisy moment of the machine hits all three alike
        for name, read in readers.items():
            t0 = time.perf_counter()
            for s, f in single:
                read(s, f)
            best[name] = min(best[name], 1000 * (time.perf_counter() - t0) / len(single))
    ours, bare, bare_pandas = best["ours"], best["bare"], best["bare_pandas"]
    return {"read_symbol_data_ms": ours, "pyarrow_read_table_ms": bare, "pyarrow_read_to_pandas_ms": bare_pandas,
            "ratio_to_bare": ours / bare, "ratio_to_bare_pandas": ours / bare_pandas, "partitions": len(single)}


def _sleep(seconds: float) -> bytes:
    time.sleep(seconds)
    return b"x" * 12_000  # about the pickled size of one symbol's result


def micro_dask_overhead(workers: int, tasks: int) -> dict:
    """Dask's own cost per task on a LocalCluster like the scan's.

    - no-op tasks per second, submitted and gathered the way the driver does it (results fetched
      eight at a time);
    - CPU milliseconds per task spent by the driver process (client + scheduler) and by the worker
      processes, for tasks that sleep 20 ms (no CPU of their own) and return 12 kB: this is the
      overhead that competes with detector code for the cores.
    """
    import psutil
    from distributed import Client, LocalCluster, as_completed

    import cluster
    import dask
    with dask.config.set(cluster.QUIET_DASK), \
            LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as lc, \
            Client(lc) as client:
        def run_all(futures: list) -> None:
            queue = as_completed(futures)
            futures.clear()  # as the driver does: a future is released once its result is here
            done = []  # results fetched 8 at a time, as harness.run.dask_results does
            for future in queue:
                done.append(future)
                if len(done) == 8:
                    client.gather(done)
                    done = []
            client.gather(done)

        client.submit(_noop, 0).result()
        t0 = time.perf_counter()
        for batch_start in range(0, tasks, 100):
            run_all(client.map(_noop, range(batch_start, min(tasks, batch_start + 100)),
                               key=[("noop", i) for i in range(batch_start, min(tasks, batch_start + 100))]))
        elapsed = time.perf_counter() - t0

        me = psutil.Process()
        kids = me.children(recursive=True)
        before, kids_before = me.cpu_times(), [k.cpu_times() for k in kids]
        sleepers = 300
        run_all(client.map(_sleep, [0.02] * sleepers, key=[("sleep", i) for i in range(sleepers)]))
        after = me.cpu_times()
        worker_cpu = sum(k.cpu_times().user - b.user + k.cpu_times().system - b.system for k, b in zip(kids, kids_before))
        driver_cpu = after.user - before.user + after.system - before.system
    return {"workers": workers, "tasks": tasks, "tasks_per_second": tasks / elapsed,
            "ms_per_task": 1000 * elapsed / tasks, "driver_cpu_ms_per_task": 1000 * driver_cpu / sleepers,
            "worker_cpu_ms_per_task": 1000 * worker_cpu / sleepers}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=400)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    parser.add_argument("--results", default=str(HERE / "results"), help="folder for the JSON")
    parser.add_argument("--noop-tasks", type=int, default=2000)
    parser.add_argument("--overhead-only", action="store_true", help="only the Dask per-task micro-benchmark")
    parser.add_argument("--child", choices=("serial", "dask", "ppe"), help=argparse.SUPPRESS)
    parser.add_argument("--workers-n", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--subset", default="", help=argparse.SUPPRESS)
    parser.add_argument("--per-task", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--symbols-per-task", type=int, default=4, help="K of the dask/K rows; 1 = no such rows")
    args = parser.parse_args()
    if args.child:
        args.mode, args.workers = args.child, args.workers_n
        return child(args)

    if args.overhead_only:
        print(json.dumps(micro_dask_overhead(2, args.noop_tasks), indent=2))
        return None

    from harness.io import list_symbols
    from harness.synth import write_universe
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = str(tmp / "ohlcv")
        write_universe(Path(data), args.symbols, args.years, seed=7)
        symbols = list_symbols(data)
        rows = [{"mode": "serial", "workers": 1, **measure("serial", 1, data, symbols, tmp)}]
        for n in counts:
            for mode in ("dask", "ppe", "limit"):
                rows.append({"mode": mode, "workers": n, **measure(mode, n, data, symbols, tmp)})
                print(f"  measured {mode} x{n}", file=sys.stderr)
            if args.symbols_per_task > 1 and n > 1:  # workers 1 is the in-process path: no tasks
                k = args.symbols_per_task
                rows.append({"mode": f"dask/{k}", "workers": n,
                             **measure("dask", n, data, symbols, tmp, per_task=k)})
        read = micro_read(data, symbols)
        overhead = micro_dask_overhead(2, args.noop_tasks)

    serial = rows[0]["scan_seconds"]
    by = {(r["mode"], r["workers"]): r for r in rows}
    for r in rows:
        r["symbols_per_second"] = len(symbols) / r["scan_seconds"]
        r["speedup_vs_serial"] = serial / r["scan_seconds"]
        limit, ppe = by.get(("limit", r["workers"])), by.get(("ppe", r["workers"]))
        r["ratio_to_limit"] = limit["scan_seconds"] / r["scan_seconds"] if limit else None
        r["ratio_to_ppe"] = ppe["scan_seconds"] / r["scan_seconds"] if ppe else None
    report = {"machine": {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
              "universe": {"symbols": len(symbols), "years": args.years, "detectors": len(DETECTORS)},
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), "scaling": rows, "read": read, "dask_overhead": overhead,
              "serial_ms_per_symbol": 1000 * serial / len(symbols)}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(format_report(report))
    print(f"\nsaved {path}")


def format_report(report: dict) -> str:
    m = report["machine"]
    lines = [f"Machine: {m['cores']} cores, {m['cpu']}; universe {report['universe']['symbols']} symbols x "
             f"{report['universe']['years']} years, {report['universe']['detectors']} detectors; "
             f"serial {report['serial_ms_per_symbol']:.1f} ms/symbol",
             "", "| mode | workers | scan s | symbols/s | vs serial | vs limit | vs PPE | start-up s | driver RSS MB "
             "| detector CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    for r in report["scaling"]:
        lines.append(f"| {r['mode']} | {r['workers']} | {r['scan_seconds']:.2f} | {r['symbols_per_second']:.1f} | "
                     f"{fmt(r['speedup_vs_serial'])} | {fmt(r['ratio_to_limit'])} | {fmt(r['ratio_to_ppe'])} | "
                     f"{r['startup_seconds']:.2f} | {r['rss_mb']:.0f} | {r['detector_cpu_seconds']:.1f} |")
    read, over = report["read"], report["dask_overhead"]
    lines += ["", f"read_symbol_data {read['read_symbol_data_ms']:.2f} ms/partition; bare pq.read_table "
              f"{read['pyarrow_read_table_ms']:.2f} ms ({read['ratio_to_bare']:.2f}x), read_table + to_pandas "
              f"{read['pyarrow_read_to_pandas_ms']:.2f} ms ({read['ratio_to_bare_pandas']:.2f}x)",
              f"Dask no-op tasks at {over['workers']} workers: {over['tasks_per_second']:.0f} tasks/s "
              f"({over['ms_per_task']:.2f} ms/task); CPU per 20 ms sleeping task: driver "
              f"{over['driver_cpu_ms_per_task']:.1f} ms, workers {over['worker_cpu_ms_per_task']:.1f} ms"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
