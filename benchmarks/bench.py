"""Full-universe benchmark: whole CLI processes, the way a user runs them, modes alternated over rounds.

    python benchmarks/bench.py [--symbols 5000] [--years 20] [--rounds 3]     (make bench)
    python benchmarks/bench.py --smoke                                          (the test suite's)

Each measurement is one `python -m harness.run` process (or two, for the limit), from its start
to its exit: imports, cluster start, scan, final files, report. Modes, one of each per round:
- serial:      --workers 1, the in-process reference path;
- dask-2:      --workers 2 with the defaults (symbols_per_task: auto);
- dask-8:      --workers 8 with the defaults (what `make run` does);
- dask-2-per1: --workers 2 with symbols_per_task: 1 (one future per symbol);
- limit-2:     two --workers 1 processes over the two halves of the universe, started together:
               what the cores do with no coordination at all.
Plus the default `make run` workload (the 500 x 10 sample): serial against the default 8 workers.
For each: wall seconds (median and range over the rounds), CPU seconds of every process (the
driver, its cluster, the limit's two processes: getrusage of the reaped children), and run.json's
timings. Then the Dask micro-benchmark: CPU per task of a bare client.map against the scan's own
path at symbols_per_task: 1, both with tasks that sleep (so every CPU cycle is overhead); and a
projection for 8 workers on 8 cores from the measured parts. Prints a report, saves JSON under
benchmarks/results/. Asserts nothing about time. The universe is generated once into
data/bench/<symbols>x<years>/ and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

MODES = {"serial": {"workers": 1}, "dask-2": {"workers": 2}, "dask-8": {"workers": 8},
         "dask-2-per1": {"workers": 2, "symbols_per_task": 1}}


def universe(symbols: int, years: int, root: Path) -> Path:
    """The benchmark universe, generated once (a stamp file marks it complete)."""
    from harness.synth import write_universe
    data = root / f"{symbols}x{years}" / "ohlcv"
    stamp = data.parent / "complete"
    if not stamp.exists():
        print(f"generating {symbols} symbols x {years} years into {data} (once)", file=sys.stderr, flush=True)
        write_universe(data, symbols, years, seed=7)
        stamp.write_text("")
    return data


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def descendants_cpu(procs: list[subprocess.Popen], seen: dict[int, float]) -> None:
    """Record in `seen` the CPU seconds so far of every process below `procs` (workers fork from a
    forkserver, which reaps them: getrusage of this process never sees their CPU)."""
    import psutil
    for proc in procs:
        try:
            below = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            continue
        for child in below:
            try:
                times = child.cpu_times()
                seen[child.pid] = times.user + times.system
            except psutil.Error:
                pass


def run_processes(configs: list[Path], workers: int) -> dict:
    """Start one CLI process per config together, wait for all; wall and CPU of all of them (the CLI
    processes' own from getrusage, their descendants' sampled every 0.2 s, so a descendant's last
    0.2 s at most is missed)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    # --no-reuse: full runs, though the previous round's folder is there (harness.reuse)
    procs = [subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(c), "--workers", str(workers),
                               "--no-reuse"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in configs]
    below: dict[int, float] = {}
    while any(p.poll() is None for p in procs):
        descendants_cpu(procs, below)
        time.sleep(0.2)
    errors = [p.communicate()[1] for p in procs]
    # getrusage counts the CLI processes and what they reaped themselves (the resource tracker);
    # the forkserver and its workers are not reaped by them: add what was sampled of those
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0 + sum(below.values())
    for proc, err in zip(procs, errors):
        if proc.returncode != 0:
            raise SystemExit(f"benchmark run failed:\n{err}")
    runs = [json.loads((Path(yaml.safe_load(c.read_text())["out_dir"]) / "run.json").read_text()) for c in configs]
    return {"wall": wall, "cpu": cpu, "timings": runs[0]["timings"], "finish_jobs": runs[0]["finish_jobs"],
            "tasks": sum(r.get("tasks", 0) for r in runs),
            "detector_cpu": sum(sum(r["cpu_seconds"].values()) for r in runs)}


def write_configs(tmp: Path, data: Path, symbols: list[str]) -> dict[str, list[Path]]:
    tmp.mkdir(parents=True, exist_ok=True)
    from harness.detectors import REGISTERED
    base = {"ohlcv_path": str(data), "detectors": list(REGISTERED), "dashboard_address": "127.0.0.1:0"}
    configs = {}
    for mode, keys in MODES.items():
        path = tmp / f"{mode}.yaml"
        path.write_text(yaml.safe_dump({**base, **{k: v for k, v in keys.items() if k != "workers"},
                                        "out_dir": str(tmp / mode)}))
        configs[mode] = [path]
    halves = [symbols[: len(symbols) // 2], symbols[len(symbols) // 2:]]
    configs["limit-2"] = []
    for n, half in enumerate(halves):
        path = tmp / f"limit-{n}.yaml"
        path.write_text(yaml.safe_dump({**base, "symbols": half, "out_dir": str(tmp / f"limit-{n}")}))
        configs["limit-2"].append(path)
    return configs


def measure(configs: dict[str, list[Path]], rounds: int, label: str) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {mode: [] for mode in configs}
    for r in range(rounds):
        for mode, paths in configs.items():  # alternated: a slow moment of the machine hits every mode
            workers = MODES.get(mode, {}).get("workers", 1)
            results[mode].append(run_processes(paths, workers))
            print(f"  {label} round {r + 1}/{rounds} {mode:12s} {results[mode][-1]['wall']:7.2f} s", file=sys.stderr,
                  flush=True)
    return results


def summarise(runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    cpus = [r["cpu"] for r in runs]
    timings = {k: statistics.median(r["timings"][k] for r in runs) for k in runs[0]["timings"]}
    return {"wall_median": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
            "cpu_median": statistics.median(cpus), "detector_cpu_median": statistics.median(r["detector_cpu"] for r in runs),
            "timings_median": timings, "tasks_median": statistics.median(r["tasks"] for r in runs), "walls": walls,
            "finish_jobs_seconds_median": statistics.median(r["finish_jobs"]["seconds"] for r in runs),
            "finish_write_seconds_median": statistics.median(r["finish_jobs"]["write_seconds"] for r in runs),
            "finish_costs": runs[0]["finish_jobs"]["costs"], "finish_unit_costs": runs[0]["finish_jobs"]["unit_costs"],
            "finish_pieces": runs[0]["finish_jobs"]["pieces"],
            # per run, so that sums of steps come from one run (medians of steps do not add up)
            "timings_runs": [r["timings"] for r in runs],
            "fixed_median": statistics.median(r["timings"]["total"] - r["timings"]["scan"] for r in runs)}


# ---------------------------------------------------------------- Dask's own cost per task

def _sleep(seconds: float) -> list:
    time.sleep(seconds)
    return []


def dask_overhead(workers: int = 2, tasks: int = 300, sleep: float = 0.02) -> dict:
    """CPU ms per task (all processes: driver with scheduler, workers) of (a) a bare client.map of
    tasks that sleep and (b) the scan's own path (harness.executors.dispatch at symbols_per_task 1) over
    one-bar symbols with a detector that sleeps as long, less the in-process CPU of scanning them."""
    import psutil
    from distributed import Client, LocalCluster

    import harness.executors.clusters
    import dask
    from harness.detectors import resolve_detectors
    from cluster.plan import TaskPlanner
    from harness.executors.dispatch import ScanFeed
    from harness.task import ScanSettings, scan_symbol
    from bench_support import one_bar_universe

    me = psutil.Process()

    def cpu() -> float:
        total = sum(sum(p.cpu_times()[:2]) for p in me.children(recursive=True) if p.is_running())
        return total + sum(me.cpu_times()[:2])

    with tempfile.TemporaryDirectory() as tmp:
        data = one_bar_universe(Path(tmp), tasks)
        symbols = sorted(p.name.split("=", 1)[1] for p in Path(data).iterdir())
        task = ScanSettings(str(data), 10_000, None, tuple(resolve_detectors(("bench_support:sleepy",), {})), (5,))
        t0 = time.thread_time()
        for s in symbols[:50]:
            scan_symbol(s, task)
        in_process = (time.thread_time() - t0) / 50  # the symbol's own CPU (reading, bookkeeping)
        with dask.config.set(harness.executors.clusters.QUIET_DASK), \
                LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as lc, \
                Client(lc) as client:
            client.run(exec, "import harness.task, bench_support")
            client.gather(client.map(_sleep, [0.0] * 20, key=[("warm", i) for i in range(20)]))
            c0 = cpu()
            client.gather(client.map(_sleep, [sleep] * tasks, key=[("sleep", i) for i in range(tasks)]))
            bare = (cpu() - c0) / tasks
            c0 = cpu()
            done = sum(1 for _ in ScanFeed(client, symbols, task, TaskPlanner(workers, 1)).results(range(len(symbols))))
            scan = (cpu() - c0) / done - in_process
    return {"workers": workers, "tasks": tasks, "sleep_seconds": sleep, "bare_cpu_ms_per_task": 1000 * bare,
            "scan_cpu_ms_per_task": 1000 * scan, "scan_in_process_cpu_ms_per_symbol": 1000 * in_process,
            "ratio": scan / bare}


# ---------------------------------------------------------------- report

def largest_share(unit_costs: list[list[int]], cores: int) -> float:
    """The largest of `cores` jobs' share of the units' total cost, as harness.finish plans them."""
    from cluster.plan import plan_pieces
    total = sum(map(sum, unit_costs))
    if not total:
        return 0.0
    return max(sum(sum(unit_costs[d][a:b]) for d, a, b in job) for job in plan_pieces(unit_costs, cores)) / total


def list_schedule(seconds: list[float], cores: int) -> float:
    """When the last of tasks of these durations ends, each started in order on the first free core."""
    free = [0.0] * cores
    for s in seconds:
        free[free.index(min(free))] += s
    return max(free, default=0.0)


def planned_joins(out: Path, cores: int) -> list[float]:
    """CPU seconds of each join the driver would do after `cores` finish jobs for the run in `out`
    (a serial run, whose end has no joins): the real join code (harness.parquet_parts on the
    pieces' bytes) on that run's final files, each detector that plan_pieces splits cut into one
    part per piece (its row groups in proportion to its pieces' costs). On a machine with fewer
    cores the 8-worker run plans fewer jobs: this is how the projection gets the joins of 8. (A
    split detector's statistics are jobs on the workers, side by side with the others' since
    the ninth session (its paths and one per window since the tenth): not counted here, so the projection is that much optimistic.)"""
    import io
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from harness.detectors import out_name
    from cluster.plan import plan_pieces
    from harness.parquet_parts import join_parquet_parts
    run = json.loads((out / "run.json").read_text())
    unit_costs, names = run["finish_jobs"]["unit_costs"], list(run["events"])
    plan = plan_pieces(unit_costs, cores)
    seconds = []
    for code, name in enumerate(names):
        pieces = sorted((a, b) for job in plan for d, a, b in job if d == code)
        if len(pieces) < 2:
            continue
        share = np.cumsum([sum(unit_costs[code][a:b]) for a, b in pieces]) / sum(unit_costs[code])
        for kind in ("events", "forward"):
            source = pq.ParquetFile(out / out_name(name) / f"{kind}.parquet")
            cuts = [0, *np.round(share * source.num_row_groups).astype(int).tolist()]
            parts = []
            for first, last in zip(cuts, cuts[1:]):
                sink = pa.BufferOutputStream()
                with pq.ParquetWriter(sink, source.schema_arrow) as writer:
                    for group in range(first, last):
                        table = source.read_row_group(group)
                        writer.write_table(table, row_group_size=table.num_rows)
                parts.append(sink.getvalue().to_pybytes())
            started = time.thread_time()
            join_parquet_parts(parts, io.BytesIO())
            seconds.append(time.thread_time() - started)
    return seconds


def projection(full: dict[str, dict], symbols: int, overhead: dict, cores: int = 8) -> dict:
    """8 workers on 8 cores from the measured parts (see BENCHMARKS.md for the formula)."""
    serial = full["serial"]["timings_median"]
    per_symbol = serial["scan"] / symbols                     # c: CPU of one symbol, serial
    fixed_serial = full["serial"]["fixed_median"]             # imports, prepare, finalize, report (per run)
    units = full["serial"]["finish_jobs_seconds_median"]      # J_u: the detectors' units, in one process
    unit_share = largest_share(full["serial"]["finish_unit_costs"], cores)
    joins = sum(full["serial"]["planned_joins_8"])            # J_8: the driver's joins after 8 jobs
    tasks = full["dask-8"]["tasks_median"]                    # as planned at 8 workers (run.json)
    dask_cost = tasks * overhead["scan_cpu_ms_per_task"] / 1000
    cluster_start = full["dask-8"]["timings_median"]["cluster_start"]
    scan8 = (symbols * per_symbol + dask_cost) / cores
    t_serial = fixed_serial + symbols * per_symbol
    t_8 = fixed_serial - units + units * unit_share + joins + cluster_start + scan8
    return {"per_symbol_seconds": per_symbol, "fixed_seconds": fixed_serial, "finish_units_seconds": units,
            "largest_units_share": unit_share, "joins_seconds_8": joins,
            "cluster_start_8": cluster_start, "dask_seconds": dask_cost,
            "serial_seconds": t_serial, "eight_core_seconds": t_8, "speedup": t_serial / t_8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", default=str(REPO / "data" / "ohlcv"), help="the make run universe")
    parser.add_argument("--data-root", default=str(REPO / "data" / "bench"))
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--smoke", action="store_true", help="a tiny universe, one round (the test suite's)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["dask-2-per1"],
                        help="modes of the full universe to leave out (one future per symbol takes a quarter of the time)")
    parser.add_argument("--pair", action="store_true",
                        help="only dask-2 against the limit, alternated over the rounds: the noisiest target, measured alone")
    args = parser.parse_args()
    if args.pair:
        pair(args)
        return
    sys.path.insert(0, str(HERE))
    from harness.io import list_symbols
    from harness.synth import write_universe

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.smoke:
            args.symbols, args.years, args.rounds = 12, 2, 1
            data = tmp / "ohlcv"
            write_universe(data, args.symbols, args.years, seed=7)
            sample = data
        else:
            data = universe(args.symbols, args.years, Path(args.data_root))
            sample = Path(args.sample)
            if not sample.is_dir():
                write_universe(sample, 500, 10, seed=7)
        symbols = list_symbols(str(data))
        full_configs = write_configs(tmp / "full", data, symbols)
        full = measure({m: c for m, c in full_configs.items() if m not in args.skip}, args.rounds, "full")
        sample_configs = write_configs(tmp / "sample", sample, list_symbols(str(sample)))
        small = measure({m: sample_configs[m] for m in ("serial", "dask-8")}, args.rounds, "sample")
        overhead = dask_overhead(tasks=40 if args.smoke else 300)
        full_s = {m: summarise(r) for m, r in full.items()}
        full_s["serial"]["planned_joins_8"] = planned_joins(tmp / "full" / "serial", 8)
    small_s = {m: summarise(r) for m, r in small.items()}
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "cpu": cpu_model()},
        "universe": {"symbols": len(symbols), "years": args.years, "rounds": args.rounds},
        "full": full_s, "sample": small_s, "dask_overhead": overhead,
        "ratios": {"dask2_vs_limit": full_s["limit-2"]["wall_median"] / full_s["dask-2"]["wall_median"],
                   "dask8_vs_dask2": full_s["dask-2"]["wall_median"] / full_s["dask-8"]["wall_median"],
                   "dask2_vs_serial": full_s["serial"]["wall_median"] / full_s["dask-2"]["wall_median"],
                   "per1_vs_auto": (full_s["dask-2"]["wall_median"] / full_s["dask-2-per1"]["wall_median"]
                                    if "dask-2-per1" in full_s else None),
                   "sample_default_vs_serial": small_s["serial"]["wall_median"] / small_s["dask-8"]["wall_median"]},
        "projection_8_cores": projection(full_s, len(symbols), overhead),
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(format_report(report))
    print(f"\nsaved {path}")


def pair(args: argparse.Namespace) -> None:
    """--pair: dask-2 and the limit alternated over args.rounds rounds; saves pair-<time>.json."""
    from harness.io import list_symbols
    data = universe(args.symbols, args.years, Path(args.data_root))
    with tempfile.TemporaryDirectory() as tmp_name:
        configs = write_configs(Path(tmp_name), data, list_symbols(str(data)))
        runs = measure({m: configs[m] for m in ("dask-2", "limit-2")}, args.rounds, "pair")
    walls = {m: [r["wall"] for r in rs] for m, rs in runs.items()}
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "universe": {"symbols": args.symbols, "years": args.years,
                                                                        "rounds": args.rounds},
              "walls": walls, "timings": {m: [r["timings"] for r in rs] for m, rs in runs.items()},
              "cpu": {m: [r["cpu"] for r in rs] for m, rs in runs.items()},
              "per_round": [limit / dask for dask, limit in zip(walls["dask-2"], walls["limit-2"])],
              "dask2_vs_limit": statistics.median(walls["limit-2"]) / statistics.median(walls["dask-2"])}
    path = Path(args.results) / f"pair-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"dask-2 vs limit-2: {report['dask2_vs_limit']:.3f} (medians); per round "
          + ", ".join(f"{r:.3f}" for r in report["per_round"]) + f"\nsaved {path}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_report(report: dict) -> str:
    u, m = report["universe"], report["machine"]
    lines = [f"{m['cores']} cores ({m['cpu']}); {u['symbols']} symbols x {u['years']} years; "
             f"{u['rounds']} rounds, modes alternated; whole CLI processes", "",
             "| workload | mode | wall s (median) | range | CPU s | imports | cluster start | scan | finalize | report |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for workload in ("full", "sample"):
        for mode, s in report[workload].items():
            t = s["timings_median"]
            lines.append(f"| {workload} | {mode} | {s['wall_median']:.2f} | {s['wall_min']:.2f}-{s['wall_max']:.2f} | "
                         f"{s['cpu_median']:.1f} | {t['imports']:.2f} | {t['cluster_start']:.2f} | {t['scan']:.2f} | "
                         f"{t['finalize']:.2f} | {t['report']:.2f} |")
    r, o, p = report["ratios"], report["dask_overhead"], report["projection_8_cores"]
    lines += ["", f"dask-2 vs limit-2: {r['dask2_vs_limit']:.2f}   dask-8 vs dask-2: {r['dask8_vs_dask2']:.2f}   "
              f"dask-2 vs serial: {r['dask2_vs_serial']:.2f}   per-task 1 vs auto: {r['per1_vs_auto'] or float('nan'):.2f}   "
              f"sample, default (8 workers) vs serial: {r['sample_default_vs_serial']:.2f}",
              f"Dask CPU per task at {o['workers']} workers, tasks sleeping {1000 * o['sleep_seconds']:.0f} ms: bare "
              f"client.map {o['bare_cpu_ms_per_task']:.2f} ms, the scan's path {o['scan_cpu_ms_per_task']:.2f} ms "
              f"({o['ratio']:.2f}x)",
              f"Projection, 8 workers on 8 cores: {p['serial_seconds']:.0f} s serial -> {p['eight_core_seconds']:.0f} s "
              f"({p['speedup']:.1f}x)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
