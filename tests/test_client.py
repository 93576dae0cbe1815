"""The processes of a run: the LocalCluster harness.executors.local starts, and the CLI process's exit."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import distributed.scheduler
import psutil

import cluster.worker_setup
from conftest import REPO, cli_env, write_config
from harness.config import load_config
from harness.executors.clusters import HEARTBEAT_SECONDS, listening_on, machine_cores, slower_heartbeats
from harness.executors.local import LocalDask


def connect(cfg):
    """The Client of a LocalDask executor's cluster, its workers ready (closed with the block)."""
    return LocalDask(cfg).connect()


def test_local_workers_are_forked_frozen_and_send_results_straight_to_the_driver(small_universe, tmp_path):
    cfg = load_config({"ohlcv_path": str(small_universe), "out_dir": str(tmp_path / "out"), "workers": 2,
                       "dashboard_address": "127.0.0.1:0"})
    with connect(cfg) as client:
        frozen = client.run(lambda: (gc.get_freeze_count(), cluster.worker_setup.IMPORTED_IN != os.getpid()))
        direct = client.direct_to_workers
        # the forkserver starts with SIGINT blocked (cluster.forkserver), and unblocks it before forking
        masks = client.run(lambda: signal.pthread_sigmask(signal.SIG_BLOCK, set()))
    assert all(signal.SIGINT not in mask for mask in masks.values()), masks
    assert len(frozen) == min(2, machine_cores())
    # the forkserver froze its imports (Dask, pandas, the scan's code) before forking the workers,
    # not each worker at distributed's preload of cluster.worker_setup
    assert all(count > 10_000 and inherited for count, inherited in frozen.values()), frozen
    assert direct is True


def test_the_cli_freezes_its_objects_before_the_interpreter_exits(small_universe, tmp_path):
    config = write_config(tmp_path / "config.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          workers=1)
    # runpy runs the module as `python -m harness.run` does; the atexit hook runs after its last line
    code = ("import atexit, gc, runpy, sys; atexit.register(lambda: print('frozen', gc.get_freeze_count())); "
            f"sys.argv = ['harness.run', '--config', {str(config)!r}]; runpy.run_module('harness.run', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "summary.csv").is_file()
    assert int(proc.stdout.rsplit("frozen", 1)[1]) > 10_000, proc.stdout[-500:]


def test_the_forkserver_starts_before_dask_is_imported():
    # harness.run starts it first thing for a LocalCluster: its imports overlap the driver's of Dask
    code = ("import sys, time, psutil, multiprocessing.forkserver as fs; from cluster.forkserver import start_forkserver\n"
            "start_forkserver()\n"
            "assert not {'dask', 'distributed'} & set(sys.modules), 'Dask was imported'\n"
            "deadline = time.time() + 60\n"
            "while fs._forkserver._forkserver_pid is None and time.time() < deadline: time.sleep(0.05)\n"
            "print(' '.join(psutil.Process(fs._forkserver._forkserver_pid).cmdline()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "forkserver" in proc.stdout and "'harness.task', 'cluster.worker_setup'" in proc.stdout, proc.stdout


def test_local_workers_heartbeat_every_two_seconds(small_universe, tmp_path):
    cfg = load_config({"ohlcv_path": str(small_universe), "out_dir": str(tmp_path / "out"), "workers": 2,
                       "dashboard_address": "127.0.0.1:0"})
    with connect(cfg) as client:
        time.sleep(1.5)  # a worker takes the interval from the scheduler's answer to its first heartbeat
        intervals = client.run(lambda dask_worker: dask_worker.periodic_callbacks["heartbeat"].callback_time)
    assert set(intervals.values()) == {1000 * HEARTBEAT_SECONDS}, intervals  # Dask's own: 500 ms
    assert distributed.scheduler.heartbeat_interval(2) == 0.5  # Dask's own again once the cluster is closed


def test_slower_heartbeats_without_dasks_function_change_nothing(monkeypatch):
    monkeypatch.delattr(distributed.scheduler, "heartbeat_interval")
    with slower_heartbeats():
        pass
    assert not hasattr(distributed.scheduler, "heartbeat_interval")


# Put on the CLI's PYTHONPATH: the interpreter's start-up (site) imports it in every process. In the
# forkserver it says so with a file, then waits for the test's go: the Ctrl-C lands while the
# forkserver's interpreter is certainly still starting, whatever the machine's speed.
HELD_FORKSERVER = """
import os, sys, time
if "multiprocessing.forkserver import main" in " ".join(sys.orig_argv):
    folder = os.environ["SCAN_TEST_HOLD"]
    open(os.path.join(folder, "starting"), "w").close()
    deadline = time.monotonic() + 120  # only if the test never says go
    while not os.path.exists(os.path.join(folder, "go")) and time.monotonic() < deadline:
        time.sleep(0.01)
"""


def test_ctrl_c_while_the_forkserver_imports_prints_no_traceback(small_universe, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HELD_FORKSERVER)
    config = write_config(tmp_path / "config.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          workers=2, dashboard_address="127.0.0.1:0")
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config)], cwd=REPO,
                            env=cli_env(PYTHONPATH=f"{tmp_path}:{REPO}:{REPO / 'tests'}", SCAN_TEST_HOLD=str(tmp_path)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while not (tmp_path / "starting").exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        forkserver = next(p for p in psutil.Process(proc.pid).children() if "forkserver" in " ".join(p.cmdline()))
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    finally:
        (tmp_path / "go").touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted; flushed symbols are kept, rerun with --resume to continue"
    forkserver.wait(timeout=10)  # gone with the driver (psutil raises TimeoutExpired if not)


def test_ctrl_c_while_the_local_cluster_starts_prints_no_traceback(small_universe, tmp_path):
    # Each nanny's start made slow (a nanny preload that sleeps, in the driver's Dask loop): the
    # driver is then inside LocalCluster(), its workers not started, when the Ctrl-C comes.
    (tmp_path / "slow_nanny.py").write_text("import time\ndef dask_setup(nanny):\n    time.sleep(3)\n")
    config = write_config(tmp_path / "config.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          workers=2, dashboard_address="127.0.0.1:0")
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config)], cwd=REPO,
                            env=cli_env(PYTHONPATH=f"{tmp_path}:{REPO}:{REPO / 'tests'}",
                                        DASK_DISTRIBUTED__NANNY__PRELOAD='["slow_nanny"]'),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = proc.stderr.readline()
    assert "Scanning" in first, first
    time.sleep(2.5)  # Dask imported, the forkserver ready, the first nanny asleep in LocalCluster()
    children = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    # Dask's exit handler closed the half-started cluster: AssertionError: Status.init
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert children and psutil.wait_procs(children, timeout=10)[1] == []  # the forkserver and any worker gone


def _process_state() -> tuple[dict, object]:
    """What a scan must leave as it found it: every Dask setting, and distributed's heartbeat function."""
    import copy
    import dask
    return copy.deepcopy(dask.config.config), distributed.scheduler.heartbeat_interval


def test_scans_leave_the_processs_dask_settings_as_they_were_however_they_overlap(small_universe, tmp_path):
    import dask
    from harness import scan
    before = _process_state()
    keys = {"ohlcv_path": str(small_universe), "detectors": ["gap"], "workers": 2, "dashboard_address": "127.0.0.1:0"}
    scan(keys, out_dir=str(tmp_path / "alone"), progress=False)
    assert _process_state() == before

    # Two scans in two threads, the first to start the first to end: each held by its own gate
    # (user_detectors.gated_by) while the other starts.
    errors = []

    def run(name: str) -> None:
        params = {"started": str(tmp_path / f"{name}.started"), "gate": str(tmp_path / f"{name}.gate")}
        try:
            scan({**keys, "detectors": ["user_detectors:gated_by"], "params": {"user_detectors:gated_by": params}},
                 out_dir=str(tmp_path / name), progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = {name: threading.Thread(target=run, args=(name,)) for name in ("first", "second")}
    for name, thread in threads.items():
        thread.start()
        while not (tmp_path / f"{name}.started").exists() and thread.is_alive():  # its cluster runs its tasks
            time.sleep(0.05)
        assert dask.config.get("distributed.scheduler.allowed-failures") == 0  # the scan's own setting
    for name, thread in threads.items():
        (tmp_path / f"{name}.gate").touch()
        thread.join(timeout=300)
    assert not errors, errors
    assert all((tmp_path / name / "summary.csv").is_file() for name in threads)
    after = _process_state()
    assert after[1] is before[1], "distributed's heartbeat function is its own again"
    assert after[0] == before[0]


def test_a_dashboard_listening_beyond_this_machine_is_said(small_universe, tmp_path, caplog):
    # dashboard_address 0.0.0.0 binds every interface; Dask's link says 127.0.0.1 all the same
    for address in ("0.0.0.0:0", "127.0.0.1:0"):
        cfg = load_config({"ohlcv_path": str(small_universe), "out_dir": str(tmp_path / "out"), "workers": 2,
                           "dashboard_address": address})
        caplog.clear()
        with caplog.at_level("INFO", logger="scan"), connect(cfg) as client:
            port = urlsplit(client.dashboard_link).port
            assert listening_on(port) == [(address.split(":")[0], port)]
        assert f"Dask dashboard: http://127.0.0.1:{port}/status" in caplog.messages
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "dashboard" in r.getMessage()]
        if address.startswith("0.0.0.0"):
            assert warnings == [f"The Dask dashboard listens on 0.0.0.0:{port} (every interface): whoever can reach "
                                "this machine there can open it; dashboard_address: 127.0.0.1:0 keeps it to this "
                                "machine"]
        else:
            assert warnings == []
