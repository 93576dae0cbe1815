"""The end of a run cut for many workers, measured job by job in one process.

    python benchmarks/end_jobs.py [--symbols 5000] [--years 20] [--jobs 1 64] [--unit-cost N ...]
                                   [--alternate ROUNDS] [--out DIR]

What a cluster of N workers does after its scan cannot be run here (two cores), but each of its
jobs can: this stages the benchmark universe (a 2-worker LocalCluster scan, every detector; with
--out, kept and reused by the next measurement), then, for each --jobs N, runs the end of the run
(harness.finish.finish_outputs) planned for N workers with every job in this process, one after
the other and nothing else running, and times each job on its own. So the parts of a projection
for N workers are measured, not estimated: the longest null job, the longest finish job (one
unit of the busiest detector, at most), the longest summary job (a split detector's paths, one of
its windows or one file's joined footer), the driver's own steps (market index, planning, writes
and joins; summary.csv, paths.csv, quantiles.csv; the report) and the bytes the end moves between
the driver and the workers (the finish jobs' results, the summary jobs' inputs, and the staged chunks a remote
cluster's workers get: the driver sends each chunk once, the workers fetch what they need from
each other). Prints them, saves JSON under benchmarks/results/; asserts nothing about time.
Outputs go to a temporary folder and are discarded. --alternate: the same end run serially and on
a real LocalCluster of 2 workers, alternated, for the finalize ratio without the scan's noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench import universe  # noqa: E402


def stage(raw: dict):
    """A RunPlan whose staging folder holds every symbol's chunks (config `raw`): those staged in
    its out_dir by an earlier run of this script are kept (--resume), the rest scanned on 2 local
    workers."""
    from harness.config import load_config
    from harness.progress import Progress
    from harness.run import execute, prepare_run, stage_results
    cfg = load_config({**raw, "reuse": False}, {"workers": 2})
    plan = prepare_run(cfg, resume=True)
    if plan.todo:
        with execute(plan) as execution:
            stage_results(plan, execution.results, Progress(len(plan.symbols), plan.resumed_from, enabled=False))
    return plan


def shipped_bytes(plan, jobs: list, nulls: list, workers: int) -> dict[str, int]:
    """What a remote cluster of `workers` gets of the staged chunks (harness.executors.dispatch.ShippedChunks:
    job n of each round on worker n % workers; the driver sends each chunk once, to the first
    worker that needs it, and the others fetch it from there): `driver` the bytes the driver
    sends, `workers` what all the workers receive, `largest` what the worker that needs the most
    receives before its jobs can run."""
    from harness.staged_chunk import staged_files
    sizes = {c: sum(map(len, staged_files(plan.staging.path, c).values())) for c in range(plan.staging.chunks)}
    needed: dict[int, set[int]] = {}
    for kind in (nulls, jobs):
        for n, chunks in enumerate(kind):
            needed.setdefault(n % workers, set()).update(chunks)
    received = [sum(sizes[c] for c in chunks) for chunks in needed.values()]
    return {"driver": sum(sizes[c] for c in set().union(*needed.values())), "workers": sum(received),
            "largest": max(received, default=0)}


def scratch_files(out: str):
    """harness.final_files.FinalFiles into the temporary folder `out`, to be discarded."""
    from harness.final_files import FinalFiles
    return FinalFiles(Path(out), Path(out), lambda path, reason: RuntimeError(f"cannot write {path}: {reason}"))


def run_end(plan, files, run_all, processes: int):
    """harness.finish.finish_outputs of the staged run `plan` into `files`, planned for `processes`."""
    from harness.finish import finish_outputs
    cfg = plan.cfg
    return finish_outputs(plan.staging, files, plan.specs, cfg.forward_windows,
                          range(cfg.path_offsets[0], cfg.path_offsets[1] + 1), cfg.benchmark_settings(), plan.symbols,
                          run_all, processes)


def end_for(plan, jobs: int) -> dict:
    """The end of the run planned for `jobs` workers, every job here: its steps and jobs timed."""
    from harness.finish import in_this_process
    from harness.report import build_report
    from harness.executors.serial import Serial
    from harness.run import Timings, run_facts, write_statistics

    planned: list[list[tuple[int, ...]]] = []

    def run_all(function, given):  # in this process, noting the chunks each job reads
        planned.append([tuple(job.chunks) for job in given])
        return in_this_process(function, given)

    with tempfile.TemporaryDirectory() as out:
        files = scratch_files(out)
        started = time.perf_counter()
        evaluated = run_end(plan, files, run_all, jobs)
        end = time.perf_counter() - started
        started = time.perf_counter()
        summary = write_statistics(plan, files, evaluated)
        statistics_seconds = time.perf_counter() - started
        info = run_facts(plan, Serial(plan.cfg), evaluated, time.time(), Timings())
        started = time.perf_counter()
        files.text("report.html", build_report(summary, evaluated.events, evaluated.paths, info,
                                               evaluated.quantiles))
        files.text("run.json", json.dumps(info, indent=2, default=str) + "\n")
        report = time.perf_counter() - started
        files.discard()
    facts = evaluated.jobs
    shipped = shipped_bytes(plan, planned[1], planned[0], jobs)
    longest = {key: max(facts[key], default=0.0) for key in ("null_job_seconds", "job_seconds", "summary_job_seconds")}
    # the end on `jobs` workers, each job on its own core: the driver's steps plus the longest job of each round
    parts = {"market_seconds": facts["market_seconds"], "null_longest": longest["null_job_seconds"],
             "plan_seconds": facts["plan_seconds"], "finish_longest": longest["job_seconds"],
             "write_seconds": facts["write_seconds"], "summary_longest": longest["summary_job_seconds"],
             # the driver's part of the summary round: a split detector's columns joined, its parts' footers read
             "summary_driver_seconds": round(facts["summary_seconds"] - sum(facts["summary_job_seconds"]), 3),
             "statistics_seconds": round(statistics_seconds, 3), "report_seconds": round(report, 3)}
    return {"jobs": jobs, "end_seconds_here": round(end, 3), "parts": parts,
            "end_on_workers": round(sum(parts.values()), 3),
            "bytes": {"returned": facts["bytes_returned"], "sent": facts["bytes_sent"],
                      **{f"shipped_{k}": v for k, v in shipped.items()}},
            "finish_jobs": {k: v for k, v in facts.items() if k not in ("costs", "unit_costs")},
            "unit_costs": facts["unit_costs"]}


def alternate(plan, rounds: int) -> dict:
    """The end of the run (finish_outputs only) serially in this process and on a LocalCluster of 2
    workers, alternated over `rounds` rounds on the same staged chunks: the finalize ratio without
    the scan's noise (whole runs minutes apart differ by more than the effect)."""
    from harness.executors.local import LocalDask
    from harness.finish import in_this_process

    def end(run_all, processes: int) -> float:
        with tempfile.TemporaryDirectory() as out:
            files = scratch_files(out)
            started = time.perf_counter()
            run_end(plan, files, run_all, processes)
            files.discard()
            return round(time.perf_counter() - started, 3)

    walls: dict[str, list[float]] = {"serial": [], "local-2": []}
    with LocalDask(plan.cfg) as local:
        for n in range(rounds):
            walls["local-2"].append(end(local.run_jobs, local.processes))
            walls["serial"].append(end(in_this_process, 1))
            print(f"  round {n + 1}/{rounds}: serial {walls['serial'][-1]:.2f} s, local-2 {walls['local-2'][-1]:.2f} s",
                  flush=True)
    per_round = [local / serial for serial, local in zip(walls["serial"], walls["local-2"])]
    return {"walls": walls, "per_round": per_round, "median_ratio": statistics.median(per_round)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--unit-cost", type=int, nargs="+", default=[],
                        help="also measure with cluster.plan.FINISH_UNIT_COST set to each of these")
    parser.add_argument("--alternate", type=int, default=0, metavar="ROUNDS",
                        help="also the end serially and on a LocalCluster of 2, alternated over ROUNDS rounds")
    parser.add_argument("--out", help="the run's output folder, kept: its staged chunks are reused by the next "
                                      "measurement with the same --out (default: a temporary folder)")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    import cluster.plan
    shipped_cost = cluster.plan.FINISH_UNIT_COST
    data = universe(args.symbols, args.years, REPO / "data" / "bench")
    from harness.detectors import REGISTERED
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        plan = stage({"ohlcv_path": str(data), "detectors": list(REGISTERED), "dashboard_address": "127.0.0.1:0",
                      "out_dir": args.out or str(Path(tmp) / "out")})
        print(f"staged {len(plan.symbols)} symbols in {time.perf_counter() - started:.1f} s", flush=True)
        ends = []
        for cost, jobs in [(c, j) for c in [shipped_cost, *args.unit_cost] for j in args.jobs]:
            cluster.plan.FINISH_UNIT_COST = cost
            ends.append({"unit_cost": cost, **end_for(plan, jobs)})
            e = ends[-1]
            print(f"unit cost {cost}, {jobs:>3} jobs: end {e['end_on_workers']:.2f} s on {jobs} workers ({e['end_seconds_here']:.1f} s "
                  f"here, one job at a time); " + ", ".join(f"{k} {v:.2f}" for k, v in e["parts"].items())
                  + "; bytes " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in e["bytes"].items()), flush=True)
        alternated = alternate(plan, args.alternate) if args.alternate else None
        if alternated:
            print(f"local-2 vs serial end: {alternated['median_ratio']:.3f} (median of the rounds' ratios)")
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "universe": {"symbols": args.symbols, "years": args.years},
              "ends": ends, "alternated": alternated}
    path = Path(args.results) / f"end-jobs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
