"""harness.finish: detectors cut into units and pieces, and whole runs finished in units.

A detector of several pieces has its files encoded in parts by several workers and joined by the
driver (harness.parquet_parts, tests/test_parquet_parts.py); its bytes must equal one writer's, and
the units, which decide how its path sums are added up, must not depend on the number of workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from conftest import DETECTORS, REPO, cli_env, output_files, write_config
from harness.eval import abnormal_column, flagged_column, forward_column, market_column
import cluster.plan
from cluster.plan import chunk_ranges, plan_pieces
from harness.finish import assemble_statistics, compute_job, split_statistics
from harness.stats.summary import PathSums, detector_summary, score_quantiles


def test_chunk_ranges_by_hand():
    assert chunk_ranges([5, 5, 5, 5], 10) == [(0, 2), (2, 4)]
    assert chunk_ranges([5, 5, 5, 5], 100) == [(0, 4)]          # one unit
    assert chunk_ranges([1, 1, 1], 0) == [(0, 1), (1, 2), (2, 3)]  # at most one range per chunk
    assert chunk_ranges([1, 30, 1, 1], 10) == [(0, 2), (2, 4)]  # cuts that fall in one chunk are one cut
    assert chunk_ranges([], 10) == []


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=80), st.integers(1, 3 * 10**6))
def test_chunk_ranges_cover_the_chunks_once_in_order(costs, unit):
    ranges = chunk_ranges(costs, unit)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(costs)
    assert all(a < b for a, b in ranges) and all(b == c for (_, b), (c, _) in zip(ranges, ranges[1:]))
    assert len(ranges) <= max(1, -(-sum(costs) // unit))
    share = sum(costs) / len(ranges)  # every range but the last ends when it has its share or more
    assert all(sum(costs[a:b]) <= share + max(costs) for a, b in ranges)
    assert chunk_ranges(costs, unit) == ranges


def test_plan_pieces_by_hand():
    assert plan_pieces([[5], [3], [4]], 1) == [[(0, 0, 1), (1, 0, 1), (2, 0, 1)]]  # one job: nothing split
    # largest first, each whole to the least-loaded job: 9 -> A; 5 -> B; 4 -> B (9)
    assert plan_pieces([[9], [5], [4]], 2) == [[(0, 0, 1)], [(1, 0, 1), (2, 0, 1)]]
    # mean 9: A takes units 0-1 (8; a third would make 12, over 9 + 2), B the rest, then 2 -> A (10)
    assert plan_pieces([[4, 4, 4, 4], [2]], 2) == [[(0, 0, 2), (1, 0, 1)], [(0, 2, 4)]]
    # whole if within half a unit of the mean: 3 + 3 -> A, 3 + 3 -> B, then the third is split
    assert plan_pieces([[3, 3], [3, 3], [3, 3]], 2) == [[(0, 0, 2), (2, 0, 1)], [(1, 0, 2), (2, 1, 2)]]
    # a unit that does not fit stays if no other job costs less: [3, 5] is not split for 9 vs 8
    assert plan_pieces([[4, 4], [3, 5]], 3) == [[(0, 0, 1)], [(0, 1, 2)], [(1, 0, 2)]]
    assert plan_pieces([[3], [1]], 8) == [[(0, 0, 1)], [(1, 0, 1)]]  # never an empty job
    assert plan_pieces([[0, 0], [0]], 2) == [[(0, 0, 2)], [(1, 0, 1)]]
    assert plan_pieces([], 4) == [] and plan_pieces([[]], 2) == []


@given(st.lists(st.lists(st.integers(0, 10**6), max_size=6), max_size=12), st.integers(1, 16))
def test_plan_pieces_cover_every_unit_once_in_balanced_jobs(unit_costs, jobs):
    plan = plan_pieces(unit_costs, jobs)
    assert len(plan) <= min(jobs, sum(map(len, unit_costs))) and all(job and job == sorted(job) for job in plan)
    for d, costs in enumerate(unit_costs):  # consecutive pieces of each detector cover its units once
        pieces = sorted((first, last) for job in plan for e, first, last in job if e == d)
        assert [first for first, _ in pieces] == [0, *(last for _, last in pieces[:-1])] if costs else pieces == []
        assert all(first < last for first, last in pieces) and (not costs or pieces[-1][1] == len(costs))
        jobs_of = [next(n for n, job in enumerate(plan) if (d, *piece) in job) for piece in pieces]
        assert all(a != b for a, b in zip(jobs_of, jobs_of[1:])), "consecutive pieces in one job: a needless split"
    if jobs == 1 and plan:  # one job: every detector whole
        assert [(first, last) for d, first, last in plan[0]] == [(0, len(unit_costs[d])) for d, *_ in plan[0]]
    loads = [sum(sum(unit_costs[d][first:last]) for d, first, last in job) for job in plan]
    if loads:  # no job above the mean by more than one unit
        assert max(loads) <= sum(loads) / len(loads) + max(c for costs in unit_costs for c in costs)
    assert plan_pieces(unit_costs, jobs) == plan


def test_a_split_detectors_statistics_by_window_are_the_whole_tables_bit_for_bit():
    """Its paths (the units' sums added in unit order) and each window's rows, computed as separate
    jobs and put together, are the tables one process makes from all its events: the same CSV bytes."""
    rng = np.random.default_rng(3)
    n, windows, offsets = 400, (5, 20), (-2, 0, 3)
    dates = np.array(np.datetime64("2020-01-01") + np.arange(30), dtype="datetime64[ns]")
    columns = {"date": dates[rng.integers(0, 30, n)], "symbol": rng.integers(0, 12, n),
               "score": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 7, n).astype(float))}  # ties, NaN
    for h in windows:
        raw = np.where(rng.random(n) < 0.1, np.nan, rng.normal(0.001, 0.02, n))
        columns |= {forward_column(h): raw, market_column(h): rng.normal(0, 0.01, n),
                    abnormal_column(h): np.where(rng.random(n) < 0.2, np.nan, raw - 0.0005),
                    flagged_column(h): rng.random(n) < 0.05}
    units = []
    for part in np.array_split(np.arange(n), 3):  # three units, each summed from zero
        sums = PathSums(offsets, dates, 12)
        path = rng.normal(0, 0.02, (len(part), len(offsets)))
        sums.add(columns["date"][part], columns["symbol"][part], path, path - 0.001)
        units.append(sums.arrays())
    rates = {5: 0.48, 20: 0.51}
    jobs = split_statistics("spike", columns, units, windows, offsets, dates, 12, rates)
    assert len(jobs) == 1 + len(windows)
    paths, summary, quantiles = assemble_statistics(jobs, [compute_job(job) for job in jobs])["spike"]
    whole = PathSums(offsets, dates, 12)
    for sums in units:
        whole.add_sums(**sums)
    frame = pd.DataFrame(columns)
    for mine, one in ((paths, whole.paths("spike")), (summary, detector_summary(frame, windows, rates)),
                      (quantiles, score_quantiles(frame, windows, "spike"))):
        pd.testing.assert_frame_equal(mine, one, check_exact=True)
        assert mine.to_csv(index=False) == one.to_csv(index=False)


def scan_in_units(tmp_path: Path, data: Path, out: str, workers: int, unit_cost: int | None) -> Path:
    """The real CLI (harness.run.main) in a subprocess, with FINISH_UNIT_COST set to `unit_cost`
    (None: as shipped) so that a small universe's detectors are cut into units."""
    config = write_config(tmp_path / f"{out}.yaml", ohlcv_path=str(data), detectors=DETECTORS,
                          out_dir=str(tmp_path / out), flush_every=3, dashboard_address="127.0.0.1:0")
    patch = f"import cluster.plan; cluster.plan.FINISH_UNIT_COST = {unit_cost}; " if unit_cost is not None else ""
    code = (f"import sys, harness.finish; {patch}from harness.run import main; "
            f"sys.exit(main(['--config', {str(config)!r}, '--workers', '{workers}']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / out


def test_detectors_in_units_give_the_same_files_serially_and_on_workers(tmp_path, small_universe):
    whole = scan_in_units(tmp_path, small_universe, "whole", 1, None)
    serial = scan_in_units(tmp_path, small_universe, "serial", 1, 2000)
    workers = scan_in_units(tmp_path, small_universe, "workers", 2, 2000)
    run, spread = (json.loads((out / "run.json").read_text())["finish_jobs"] for out in (serial, workers))
    assert run["units"] > len(DETECTORS), "the small unit cost must cut detectors"
    assert run["jobs"] == 1 and run["pieces"] == len(DETECTORS) and run["joins"] == 0, "one job: each detector whole"
    assert spread["jobs"] == 2 and spread["pieces"] > len(DETECTORS), "two jobs: a detector split in pieces"
    # a detector of several pieces is joined: more jobs, its paths, one per window, its two files' footers
    assert 0 < spread["joins"] <= spread["pieces"] - len(DETECTORS)
    windows = len(json.loads((workers / "run.json").read_text())["config"]["forward_windows"])
    assert len(spread["summary_job_seconds"]) == spread["joins"] * (1 + windows + 2) and run["summary_job_seconds"] == []
    assert json.loads((whole / "run.json").read_text())["finish_jobs"]["units"] == len(DETECTORS)
    # the same units whatever the workers: every file, byte for byte
    assert output_files(workers) == output_files(serial)
    # the parquet files do not depend on the units at all; the paths' sums only by rounding
    files, reference = output_files(serial), output_files(whole)
    assert {n: b for n, b in files.items() if n.endswith(".parquet")} == \
        {n: b for n, b in reference.items() if n.endswith(".parquet")}
    assert files["summary.csv"] == reference["summary.csv"]
    split, one = (pd.read_csv(out / "paths.csv") for out in (serial, whole))
    assert split[["detector", "offset", "events"]].equals(one[["detector", "offset", "events"]])
    np.testing.assert_allclose(split[["mean_ret", "mean_abn", "abn_low", "abn_high"]],
                               one[["mean_ret", "mean_abn", "abn_low", "abn_high"]], rtol=1e-12)


def test_a_serial_run_holds_two_writers_per_detector_whatever_its_units(tmp_path, small_universe, monkeypatch):
    import harness.finish as finish
    from harness.config import load_config
    from harness.run import run_scan

    open_now, most = [0], [0]

    class CountingWriter(pq.ParquetWriter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

        def close(self):
            if self.is_open:
                open_now[0] -= 1
            super().close()

    monkeypatch.setattr(cluster.plan, "FINISH_UNIT_COST", 800)
    monkeypatch.setattr(finish.pq, "ParquetWriter", CountingWriter)
    cfg = load_config({"ohlcv_path": str(small_universe), "detectors": DETECTORS, "out_dir": str(tmp_path / "out"),
                       "flush_every": 3, "workers": 1})
    info = run_scan(cfg)
    assert info["finish_jobs"]["jobs"] == 1 and info["finish_jobs"]["units"] > 2 * len(DETECTORS)
    assert open_now[0] == 0 and 0 < most[0] <= 2 * len(DETECTORS), most[0]


def test_the_jobs_compute_the_summary_of_each_whole_detector(tmp_path, small_universe, monkeypatch):
    import harness.stats.summary as summary
    from harness.config import load_config
    from harness.run import run_scan

    def not_in_the_driver(frame, windows):
        raise AssertionError("the driver computed a detector's summary")

    monkeypatch.setattr(summary, "detector_summary", not_in_the_driver)  # what summarize() calls
    cfg = load_config({"ohlcv_path": str(small_universe), "detectors": DETECTORS, "out_dir": str(tmp_path / "out"),
                       "workers": 1})
    info = run_scan(cfg)
    assert info["finish_jobs"]["pieces"] == len(DETECTORS)
    table = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert table["detector"].unique().tolist() == DETECTORS and table["valid"].gt(0).all()


def scan_here(tmp_path: Path, data: Path, out: str, processes: int, monkeypatch) -> dict:
    """A serial run (harness.run.run_scan) whose end is planned for `processes` jobs, all run in
    this process (so a detector is split into pieces when processes > 1 and its units allow);
    run.json's finish_jobs."""
    import inspect

    import harness.finish as finish
    import harness.run as run
    from harness.config import load_config

    def finish_outputs(*args, **kwargs):
        bound = inspect.signature(finish.finish_outputs).bind(*args, **kwargs)
        bound.arguments["processes"] = processes
        return finish.finish_outputs(*bound.args, **bound.kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(run, "finish_outputs", finish_outputs)
        cfg = load_config({"ohlcv_path": str(data), "detectors": DETECTORS, "out_dir": str(tmp_path / out),
                           "flush_every": 3, "workers": 1})
        return run.run_scan(cfg)["finish_jobs"]



def before_whole_and_split(tmp_path: Path, data: Path, monkeypatch, change) -> None:
    """Three runs into tmp_path: "before" as shipped, then, after change(), "whole" (every
    detector in one piece) and "split" (some joined from several): the two paths of the end."""
    monkeypatch.setattr(cluster.plan, "FINISH_UNIT_COST", 2000)
    scan_here(tmp_path, data, "before", 1, monkeypatch)
    change()
    whole, split = (scan_here(tmp_path, data, out, processes, monkeypatch)
                    for out, processes in (("whole", 1), ("split", 2)))
    assert whole["joins"] == 0 and split["joins"] > 0, "one path each"

def test_a_new_statistic_is_one_function_and_one_registry_entry_through_every_path(tmp_path, small_universe,
                                                                                   monkeypatch):
    """A toy statistic registered in a temporary registry reaches summary.csv, after the others,
    the same whether each detector is finished in one piece or split into several (a WindowJob per
    window); the other columns stay as they were."""
    import harness.stats.summary as summary

    @summary.statistic("abn_max")
    def abnormal_max(abn: np.ndarray) -> dict:
        return {"abn_max": float(np.nanmax(abn)) if (~np.isnan(abn)).any() else float("nan")}

    before_whole_and_split(tmp_path, small_universe, monkeypatch,
                           lambda: monkeypatch.setattr(summary, "STATISTICS", (*summary.STATISTICS, abnormal_max)))
    before, one, several = (pd.read_csv(tmp_path / out / "summary.csv") for out in ("before", "whole", "split"))
    assert one.columns.tolist() == [*before.columns[:-2], "abn_max", *before.columns[-2:]]
    pd.testing.assert_frame_equal(one.drop(columns="abn_max"), before)
    assert (tmp_path / "whole" / "summary.csv").read_bytes() == (tmp_path / "split" / "summary.csv").read_bytes()
    for name, rows in one.groupby("detector", sort=False):
        forward = pd.read_parquet(tmp_path / "whole" / name / "forward.parquet")  # exclude_flagged is off
        assert rows["abn_max"].tolist() == [forward[f"abn_{h}"].max() for h in rows["window"]]


def test_a_new_detector_file_is_one_record(tmp_path, small_universe, monkeypatch):
    """A file added to every detector's folder by one record (harness.detector_files) is written
    whether a detector is finished in one piece or joined from several, the same bytes both ways,
    with the rows of the others; the others keep their bytes."""
    import harness.detector_files as detector_files

    scores = detector_files.DetectorFile("scores.parquet", lambda extras, windows: [
        "symbol", "date", "score", *(abnormal_column(h) for h in windows)])
    before_whole_and_split(tmp_path, small_universe, monkeypatch,
                           lambda: monkeypatch.setattr(detector_files, "DETECTOR_FILES",
                                                       (*detector_files.DETECTOR_FILES, scores)))
    before, one, several = (output_files(tmp_path / out) for out in ("before", "whole", "split"))
    assert one == several
    added = {name for name in one if name.endswith("/scores.parquet")}
    assert len(added) == len(DETECTORS) and {n: b for n, b in one.items() if n not in added} == before
    for name in DETECTORS:
        events, forward, mine = (pd.read_parquet(tmp_path / "whole" / name / f"{file}.parquet")
                                 for file in ("events", "forward", "scores"))
        pd.testing.assert_frame_equal(mine, pd.concat([events[["symbol", "date", "score"]],
                                                       forward.filter(like="abn_")], axis=1))
