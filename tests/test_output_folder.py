"""The output folder under stress, through the real CLI: two runs at once, writes that fail, paths in
the way, folders that are not the scan's, a damaged staging folder, a run with nothing to show."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, bars, cli_env, output_files, run_cli, write_config, write_partition
from harness.detectors import resolve_detectors
from harness.errors import ConfigError
from harness.outdir import LOCK_FILE, RESERVED_NAMES, REUSE_RECORD, STAGING, STAGING_MARKER

DETECTORS = ["gap", "user_detectors:gated"]
# File-size limits (bytes). Measured: the first two flushes' parts are under 3 KB, the third's rows
# part (the first file of that flush) over 10 KB, its bars (series) part ~70 KB; every final file
# but market.parquet is under 100 KB, market.parquet (6,000 dates) about 170 KB (checked in `reference`).
PART_LIMIT, FINAL_LIMIT = 8_000, 120_000


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Six 40-bar symbols, then ZZZ with 6,000 bars: with flush_every 3 the first two flushes write
    small parts and the third a big one, so a file-size limit between them fails the third flush."""
    root = tmp_path_factory.mktemp("data") / "ohlcv"
    rng = np.random.default_rng(7)
    walk = lambda n: 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))  # noqa: E731
    for symbol in ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]:
        write_partition(root, symbol, bars(close=walk(40)))
    write_partition(root, "ZZZ", bars(close=walk(6000), start="2000-01-03"))
    return root


def config(folder: Path, data: Path, out: Path, name: str = "c", **keys) -> Path:
    keys = {"ohlcv_path": str(data), "detectors": DETECTORS, "out_dir": str(out), "flush_every": 3,
            "lookback_days": 10_000, "workers": 1, **keys}
    return write_config(folder / f"{name}.yaml", **keys)


def cli(cfg: Path, *flags: str, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """The CLI; with file_size_limit, writes past that size fail with EFBIG (RLIMIT_FSIZE, SIGXFSZ
    ignored), as on a disk that is full or a file system that refuses the file: no privileges needed."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    return run_cli("--config", str(cfg), *flags, preexec_fn=limit if file_size_limit else None)


def start(cfg: Path, *flags: str, gate: Path) -> subprocess.Popen:
    """The CLI in the background, held at its first symbol until the file `gate` exists."""
    return subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(cfg), *flags], cwd=REPO,
                            env=cli_env(SCAN_TEST_GATE=str(gate)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_together(*arg_lists: list[str]) -> list[tuple[int, str]]:
    """Several CLI runs started at once; (exit code, stderr) of each."""
    procs = [subprocess.Popen([sys.executable, "-m", "harness.run", *args], cwd=REPO, env=cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for args in arg_lists]
    results = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        results.append((proc.returncode, stderr))
    return results


def wait_for(path: Path, proc: subprocess.Popen, text: str = "") -> None:
    """Until `path` exists (holding `text`), while `proc` runs."""
    while proc.poll() is None:
        try:
            if text in path.read_text():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared; the run exited {proc.returncode}: {proc.stderr.read()}")


def every_file(out: Path) -> dict[str, bytes]:
    """Every file under `out`, staging folder included: what "nothing changed" compares."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def run_files(out: Path) -> dict[str, bytes]:
    """The files run.json lists, but run.json and report.html (they hold timings)."""
    names = json.loads((out / "run.json").read_text())["files"]
    return {name: (out / name).read_bytes() for name in names if name not in ("run.json", "report.html")}


def last_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> dict[str, bytes]:
    """A lone, uninterrupted run: what every run below that completes must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = cli(config(tmp, data, tmp / "out"))
    assert proc.returncode == 0, proc.stderr
    files = output_files(tmp / "out", record=True)
    assert run_files(tmp / "out") == files, "run.json must list exactly the run's files"
    sizes = {name: len(b) for name, b in files.items()}
    assert max(v for k, v in sizes.items() if k != "market.parquet") < FINAL_LIMIT < sizes["market.parquet"], sizes
    return files


@pytest.fixture(scope="module")
def previous(tmp_path_factory, data) -> Path:
    """Results of an earlier run with other detectors, to copy into a test's output folder."""
    tmp = tmp_path_factory.mktemp("previous")
    proc = cli(config(tmp, data, tmp / "out", detectors=["gap", "volume_spike"], flush_every=2))
    assert proc.returncode == 0, proc.stderr
    return tmp / "out"


# --- one run per output folder ---

def test_a_second_run_stops_at_once_while_the_first_holds_the_folder(tmp_path, data, reference):
    out, gate = tmp_path / "out", tmp_path / "gate"
    cfg = config(tmp_path, data, out)
    first = start(cfg, gate=gate)
    try:
        wait_for(out / LOCK_FILE, first, f"pid {first.pid},")
        losers = run_together(["--config", str(cfg)], ["--config", str(cfg), "--resume"])
    finally:
        gate.touch()
        _, stderr = first.communicate(timeout=120)
    for code, message in losers:
        assert code == 2
        assert message.count("\n") == 1, "one line, before any log line of a scan"
        assert message.startswith(f"error: output folder {out} is in use by another run (pid {first.pid}, started 20")
        assert message.endswith("; wait for it to finish, or give this run another --out\n")
    assert first.returncode == 0, stderr
    assert output_files(out, record=True) == reference
    assert sorted(p.name for p in out.iterdir()) == sorted(["gap", "user_detectors.gated", "summary.csv",
                                                            "market.parquet", "paths.csv", "quantiles.csv", "report.html",
                                                            "run.json", REUSE_RECORD])


def test_a_run_killed_with_sigkill_never_blocks_the_next(tmp_path, data, reference):
    out, gate = tmp_path / "out", tmp_path / "gate"
    cfg = config(tmp_path, data, out)
    first = start(cfg, gate=gate)
    wait_for(out / LOCK_FILE, first, f"pid {first.pid},")
    first.kill()
    first.communicate()
    assert f"pid {first.pid}," in (out / LOCK_FILE).read_text(), "the dead run's lock file is still there"
    proc = cli(cfg)
    assert proc.returncode == 0, proc.stderr
    assert output_files(out, record=True) == reference


# --- writes that fail ---

def assert_failed_write_left_previous_results(proc, out: Path, before: dict[str, bytes], failing: Path,
                                              reason: str, kept: int) -> None:
    """The run exited 1 with one line naming `failing`; outside staging nothing changed, no temp file."""
    assert proc.returncode == 1, proc.stderr
    assert last_line(proc) == (f"error: cannot write {failing}: {reason}; the {kept} symbols "
                               "flushed so far are kept: rerun with --resume once that is fixed")
    assert "Traceback" not in proc.stderr
    now = every_file(out)
    assert {k: v for k, v in now.items() if not k.startswith(STAGING)} == before, "previous results untouched"
    assert not [name for name in now if name.endswith(".tmp")]


@pytest.mark.parametrize("limit, failing, kept, workers", [
    (PART_LIMIT, f"{STAGING}/rows-00002.arrow", 6, 1),  # the third flush
    (FINAL_LIMIT, "market.parquet", 7, 1),  # the final files, once every symbol is flushed
    (FINAL_LIMIT, "market.parquet", 7, 2),  # the same with the end's jobs on a LocalCluster
])
def test_a_failing_write_is_one_line_and_resume_finishes_the_run(tmp_path, data, previous, reference,
                                                                 limit, failing, kept, workers):
    out = tmp_path / "out"
    shutil.copytree(previous, out)
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("the user's own")
    before = every_file(out)
    cfg = config(tmp_path, data, out, workers=workers, dashboard_address="127.0.0.1:0")
    proc = cli(cfg, file_size_limit=limit)
    assert_failed_write_left_previous_results(proc, out, before, out / failing, "File too large", kept)
    resumed = cli(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming: {kept}/7 symbols already flushed" in resumed.stderr
    assert run_files(out) == reference
    # Folders that are not this run's stay as they were: an earlier detector's, the user's.
    assert {k: v for k, v in every_file(out).items() if k.startswith(("volume_spike/", "mine/"))} == \
        {k: v for k, v in before.items() if k.startswith(("volume_spike/", "mine/"))}


def test_a_file_where_a_detector_folder_goes_is_refused_before_the_scan(tmp_path, data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gap").write_text("a file of the user's")
    cfg = config(tmp_path, data, out)
    proc = cli(cfg)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert last_line(proc) == (f"error: cannot write {out / 'gap'}: a file is in the way (this scan writes a "
                               "folder there); no symbol was flushed yet, so there is nothing to resume")
    assert every_file(out) == {"gap": b"a file of the user's"}, "nothing written, the file untouched"


def test_a_folder_where_a_file_goes_appearing_mid_run_fails_before_any_rename(tmp_path, data, previous, reference):
    out, gate = tmp_path / "out", tmp_path / "gate"
    shutil.copytree(previous, out)
    (out / "summary.csv").unlink()
    before = every_file(out)
    cfg = config(tmp_path, data, out)
    proc = start(cfg, gate=gate)
    wait_for(out / STAGING / "state.json", proc)
    (out / "summary.csv").mkdir()
    gate.touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'summary.csv'}: a folder is in the way (this scan writes a file there); "
        "the 7 symbols flushed so far are kept: rerun with --resume once that is fixed")
    now = every_file(out)
    assert {k: v for k, v in now.items() if not k.startswith(STAGING)} == before
    (out / "summary.csv").rmdir()
    resumed = cli(cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert run_files(out) == reference


# --- the folder is the scan's, and only its own files are touched ---

def test_an_out_dir_that_cannot_be_the_scans_is_refused_up_front(tmp_path, data):
    (tmp_path / "a_file").write_text("x")
    cases = {
        str(tmp_path / "a_file"): f"'{tmp_path / 'a_file'}' is a file; give a folder",
        str(tmp_path / "a_file" / "out"): f"'{tmp_path / 'a_file'}' is a file, so '{tmp_path / 'a_file' / 'out'}' "
                                          "cannot be a folder",
        "/": "'/' is the file-system root",
        str(data): f"'{data}' is the dataset root 'ohlcv_path' or inside it",
        str(data / "symbol=AAA" / "out"): f"'{data / 'symbol=AAA' / 'out'}' is the dataset root 'ohlcv_path' or "
                                          "inside it",
    }
    cfg = config(tmp_path, data, tmp_path / "unused")
    data_before = every_file(data)
    results = run_together(*(["--config", str(cfg), "--out", out] for out in cases))
    for (code, stderr), message in zip(results, cases.values()):
        assert code == 2, stderr
        assert stderr.startswith(f"error: config key 'out_dir': {message}") and stderr.count("\n") == 1, stderr
    assert not Path("/", LOCK_FILE).exists() and not Path("/", STAGING).exists()
    assert every_file(data) == data_before and (tmp_path / "a_file").read_text() == "x"


def test_a_detector_whose_folder_would_be_a_file_of_the_scan_is_refused(tmp_path, data):
    (tmp_path / "report.py").write_text("def html(df, cfg):\n    return df.iloc[::50][['date']].assign(score=1.0)\n")
    cfg = config(tmp_path, data, tmp_path / "out", detectors=["gap", "report:html"])
    proc = run_cli("--config", str(cfg), env=cli_env(PYTHONPATH=f"{REPO}:{tmp_path}"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: config key 'detectors': 'report:html' would write to the folder "
                                  "'report.html', a name the scan keeps for its own files")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", RESERVED_NAMES)
def test_no_detector_name_maps_to_a_name_of_the_scans_own(name):
    module, _, function = name.rpartition(".")
    for detector in (f"{module}:{function}", f"{module}:{function}".upper()):  # case-insensitive file systems
        with pytest.raises(ConfigError, match="a name the scan keeps for its own files"):
            resolve_detectors((detector,), {})


def test_a_staging_folder_without_the_marker_is_never_deleted(tmp_path, data):
    out = tmp_path / "out"
    (out / STAGING / "empty").mkdir(parents=True)
    (out / STAGING / "notes.txt").write_text("the user's own")
    cfg = config(tmp_path, data, out)
    for flags in ([], ["--resume"]):
        proc = cli(cfg, *flags)
        assert proc.returncode == 2
        assert proc.stderr == (f"error: config key 'out_dir': {out / STAGING} was not made by this tool (it has no "
                               f"{STAGING_MARKER} file) and is left alone; move or rename it\n")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [STAGING, f"{STAGING}/empty",
                                                                        f"{STAGING}/notes.txt"]


def test_a_symlink_planted_at_the_lock_path_destroys_nothing(tmp_path, data):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("someone's precious file\n")
    (out / LOCK_FILE).symlink_to(victim)
    proc = cli(config(tmp_path, data, out))
    assert proc.returncode == 2
    assert proc.stderr == (f"error: config key 'out_dir': {out / LOCK_FILE} is a symlink to {victim}, not this "
                           "tool's lock file; it is left alone: remove it and run again\n")
    assert victim.read_text() == "someone's precious file\n"
    assert (out / LOCK_FILE).is_symlink() and [p.name for p in out.iterdir()] == [LOCK_FILE]


@pytest.fixture(scope="module")
def staged(tmp_path_factory, data) -> tuple[Path, Path]:
    """An output folder whose run failed at its last write: every symbol staged, ready for --resume."""
    tmp = tmp_path_factory.mktemp("staged")
    cfg = config(tmp, data, tmp / "out")
    proc = cli(cfg, file_size_limit=FINAL_LIMIT)
    assert proc.returncode == 1 and (tmp / "out" / STAGING / "state.json").exists(), proc.stderr
    return cfg, tmp / "out"


@pytest.mark.parametrize("damage, problem", [
    ("broken state.json", "{staging}/state.json is unreadable (not valid JSON"),
    ("missing part", "the staged part {staging}/rows-00001.arrow is missing"),
    ("part rewritten at the same size", "the staged part {staging}/series-00001.arrow is not the file that was "
                                        "staged (its checksum differs"),
])
def test_resume_from_a_damaged_staging_folder_is_one_line_and_changes_nothing(tmp_path, staged, reference,
                                                                              damage, problem):
    cfg, source = staged
    out = tmp_path / "out"
    shutil.copytree(source, out)
    if damage == "broken state.json":
        (out / STAGING / "state.json").write_text('{"run_key": ')
    elif damage == "missing part":
        (out / STAGING / "rows-00001.arrow").unlink()
    else:  # other closes, the same bytes but those (it was resumed: exit 0, wrong summary, paths, forward)
        import pyarrow as pa
        from harness.staged_chunk import write_arrow
        part = out / STAGING / "series-00001.arrow"
        table, size = pa.ipc.open_file(pa.py_buffer(part.read_bytes())).read_all(), part.stat().st_size
        write_arrow(table.set_column(2, "close", pa.array(table.column("close").to_numpy() * 1.5)), part)
        assert part.stat().st_size == size
    before = every_file(out)
    proc = run_cli("--config", str(cfg), "--out", str(out), "--resume")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: cannot resume: ")
    assert problem.format(staging=out / STAGING) in proc.stderr
    assert proc.stderr.rstrip().endswith("; rerun without --resume to start over")
    assert every_file(out) == before, "nothing written, nothing left behind"
    if damage == "missing part":  # the advice works (tried once: it is the same for every damage)
        fresh = run_cli("--config", str(cfg), "--out", str(out))
        assert fresh.returncode == 0, fresh.stderr
        assert output_files(out, record=True) == reference


@pytest.mark.parametrize("broken", ["unreadable files", "no bars"])
def test_a_run_in_which_no_symbol_succeeded_keeps_the_previous_results(tmp_path, previous, broken):
    data = tmp_path / "ohlcv"
    for symbol in ("AAA", "BBB"):
        if broken == "no bars":
            (data / f"symbol={symbol}").mkdir(parents=True)
        else:
            write_partition(data, symbol, bars(60)).write_bytes(b"not parquet")
    out = tmp_path / "out"
    shutil.copytree(previous, out)
    before = every_file(out)
    proc = cli(config(tmp_path, data, out, on_error="skip"))
    assert proc.returncode == 1
    detail = ("2 failed, 0 had no bars in the lookback window; first failure: symbol 'AAA': cannot read file"
              if broken == "unreadable files" else "0 failed, 2 had no bars in the lookback window)")
    assert last_line(proc).startswith(f"error: no symbol was scanned ({detail}")
    assert last_line(proc).endswith(f"; the previous results in {out} are left as they were")
    assert every_file(out) == before
