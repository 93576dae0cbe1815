"""harness.scan from Python: on a caller's own Client, in a notebook, interrupted; and the CLI's flags."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, cli_env, output_files, run_cli, write_config
from harness.outdir import STAGING

DETECTORS = ["gap", "volume_spike", "volume_spike_trend"]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as made:
        yield made


def test_scan_on_a_callers_client_writes_the_clis_bytes_and_leaves_the_client_open(tmp_path, small_universe, client):
    from harness import scan
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), detectors=DETECTORS,
                          out_dir=str(tmp_path / "cli"), flush_every=3)
    proc = run_cli("--config", str(config), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    result = scan(str(config), client=client, out_dir=str(tmp_path / "api"))
    assert client.status == "running" and client.cluster.status.name == "running"
    assert output_files(tmp_path / "api") == output_files(tmp_path / "cli")
    run = json.loads((tmp_path / "api" / "run.json").read_text())
    assert run["worker_processes"] == 2 and run["scheduler_address"] is None
    assert run["workers"] == 2 and run["config"]["workers"] == 8, "the processes that ran, not the config's default"
    # the results as DataFrames, read from the files
    written = pd.read_csv(tmp_path / "cli" / "summary.csv")
    pd.testing.assert_frame_equal(result.summary.drop(columns=["baseline", "note"]),
                                  written.drop(columns=["baseline", "note"]))
    assert result.summary["baseline"].tolist() == ["", "", "", "", "", "", "", "", "volume_spike", "volume_spike",
                                                   "volume_spike", "volume_spike"]
    assert result.forward("gap").equals(pd.read_parquet(tmp_path / "cli" / "gap" / "forward.parquet"))
    assert len(result.events("volume_spike")) == result.summary.set_index(["detector", "window"]).loc[
        ("volume_spike", 5), "events"]
    assert set(result.quantiles["detector"]) == set(DETECTORS) and len(result.paths) == 3 * 61
    assert "ScanResult(" in repr(result) and "volume_spike_trend" in repr(result)
    with pytest.raises(KeyError, match="did not run"):
        result.events("ma_cross")


def test_a_config_mistake_is_the_clis_one_line_error(tmp_path, small_universe):
    from harness import scan
    from harness.errors import ConfigError
    with pytest.raises(ConfigError, match="^config key 'workers': must be between 1 and 12, got 99$"):
        scan({"ohlcv_path": str(small_universe)}, workers=99, out_dir=str(tmp_path / "out"))


def test_a_user_detector_the_workers_cannot_import_is_shipped_to_them(tmp_path, small_universe, client):
    from harness import scan
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "shipped_detectors.py").write_text(textwrap.dedent('''
        import pandas as pd

        def every_tenth(df, cfg):
            rows = df.iloc[::10]
            return pd.DataFrame({"date": rows["date"], "score": 1.0})
    '''))
    sys.path.insert(0, str(folder))  # this process (the driver) can import it; the running workers cannot
    try:
        with pytest.raises(Exception, match="No module named 'shipped_detectors'"):
            client.run(__import__, "shipped_detectors")
        result = scan({"ohlcv_path": str(small_universe), "detectors": ["shipped_detectors:every_tenth"]},
                      client=client, out_dir=str(tmp_path / "out"))
    finally:
        sys.path.remove(str(folder))
    from harness.io import list_symbols, read_symbol_data
    forward = result.forward("shipped_detectors:every_tenth")
    expected = {s: len(read_symbol_data(s, str(small_universe), 7305).iloc[::10]) for s in list_symbols(str(small_universe))}
    assert forward.groupby("symbol").size().to_dict() == expected
    assert all(client.run(lambda: __import__("shipped_detectors").__name__ == "shipped_detectors").values())


NOTEBOOK_CELLS = [
    "from distributed import Client, LocalCluster\n"
    "client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address='127.0.0.1:0'))",
    "from harness import scan\n"
    "result = scan({{'ohlcv_path': {data!r}, 'detectors': ['gap', 'volume_spike']}}, client=client, out_dir={out!r})\n"
    "result",
    "print(result.summary.loc[result.summary.window == 20, ['detector', 'events']].to_string(index=False))\n"
    "client.close()",
]


def test_a_notebook_shows_progress_and_gets_the_summary(tmp_path, small_universe):
    import nbformat
    from nbclient import NotebookClient
    cells = [nbformat.v4.new_code_cell(c.format(data=str(small_universe), out=str(tmp_path / "out")))
             for c in NOTEBOOK_CELLS]
    notebook = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    scan_cell = notebook.cells[1].outputs
    stderr = "".join(o.get("text", "") for o in scan_cell if o.get("name") == "stderr")
    assert "20/20" in stderr and "symbol/s" in stderr, stderr  # the bar (text: no ipywidgets here)
    assert "Running on the given Dask client (2 workers)" in stderr  # the scan's log lines, no set-up
    shown = "".join(o.get("data", {}).get("text/plain", "") for o in scan_cell)
    assert shown.startswith(f"ScanResult('{tmp_path / 'out'}')") and "volume_spike" in shown
    printed = "".join(o.get("text", "") for o in notebook.cells[2].outputs)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    expected = summary.loc[summary.window == 20, ["detector", "events"]].to_string(index=False)
    assert printed.strip() == expected.strip()


INTERRUPTED_SCRIPT = """
import os, signal, sys, threading, time, json
from distributed import Client, LocalCluster
from harness import scan
from harness.errors import Interrupted

client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0"))
state = os.path.join(sys.argv[2], ".symbol-scan-staging", "state.json")

def interrupt():  # a notebook's stop button: KeyboardInterrupt in the main thread, once chunks are staged
    while not (os.path.exists(state) and json.load(open(state))["chunks"]):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    scan({"ohlcv_path": sys.argv[1], "detectors": ["gap", "user_detectors:slow"], "flush_every": 3,
          "symbols_per_task": 1}, client=client, out_dir=sys.argv[2], progress=False)
except Interrupted as exc:
    print("INTERRUPTED", exc, client.status, flush=True)
result = scan({"ohlcv_path": sys.argv[1], "detectors": ["gap", "user_detectors:slow"], "flush_every": 3},
              client=client, out_dir=sys.argv[2], resume=True, progress=False)
print("RESUMED", len(result.summary), flush=True)
client.close()
"""


def test_an_interrupt_stops_the_scan_cleanly_and_resume_finishes_it(tmp_path, small_universe):
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_SCRIPT, str(small_universe), str(tmp_path / "out")],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "INTERRUPTED interrupted; flushed symbols are kept, run again with resume=True (--resume) to continue " \
           "running" in proc.stdout, proc.stdout + proc.stderr
    assert "Resuming: " in proc.stderr and "RESUMED 8" in proc.stdout
    assert not (tmp_path / "out" / STAGING).exists()


def test_the_cli_has_a_version_a_quiet_mode_and_a_console_script(tmp_path, small_universe):
    from harness import __version__
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"symbol-scan {__version__}"
    quiet = run_cli("--data", str(small_universe), "--out", str(tmp_path / "out"), "--workers", "1", "-q",
                    cwd=tmp_path)  # no config.yaml here: the documented defaults
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "volume_spike_trend" in quiet.stdout  # all nine detectors, no log line
    installed = shutil.which("symbol-scan", path=str(Path(sys.executable).parent))  # pip's console script
    assert installed, "pip install . installs the symbol-scan command beside the interpreter"
    script = subprocess.run([installed, "--version"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.strip() == f"symbol-scan {__version__}"


SERIAL_INTERRUPT = """
import json, os, signal, sys, threading, time
from harness import scan
from harness.errors import Interrupted

state = os.path.join(sys.argv[2], ".symbol-scan-staging", "state.json")

def interrupt():  # Ctrl-C while a detector runs in this process (workers: 1)
    while not (os.path.exists(state) and json.load(open(state))["chunks"]):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    scan({"ohlcv_path": sys.argv[1], "detectors": ["user_detectors:slow"], "flush_every": 3, "workers": 1,
          "on_error": "skip"}, out_dir=sys.argv[2], progress=False)
    print("FINISHED", flush=True)
except Interrupted as exc:
    print("INTERRUPTED", flush=True)
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
"""


def test_an_interrupt_of_a_serial_scan_is_no_failed_symbol(tmp_path, small_universe):
    # the KeyboardInterrupt lands inside the detector: it was taken for the detector's failure of
    # that symbol, and with on_error: skip the run went on to the end
    proc = subprocess.run([sys.executable, "-c", SERIAL_INTERRUPT, str(small_universe), str(tmp_path / "out")],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["INTERRUPTED", "True"], proc.stdout + proc.stderr  # the handler is back


def test_an_edited_detector_runs_its_new_code_on_a_client_that_ran_the_old(tmp_path, small_universe, client):
    # a notebook's Client keeps the modules it imported: the edited detector ran its old code there
    import importlib
    from harness import scan
    folder = tmp_path / "mine"
    folder.mkdir()
    source = folder / "edited_detectors.py"
    source.write_text("import pandas as pd\n\ndef every(df, cfg):\n    rows = df.iloc[::20]\n"
                      "    return pd.DataFrame({'date': rows['date'], 'score': 1.0})\n")
    sys.path.insert(0, str(folder))
    try:
        first = scan({"ohlcv_path": str(small_universe), "detectors": ["edited_detectors:every"]}, client=client,
                     out_dir=str(tmp_path / "v1"), progress=False)
        source.write_text(source.read_text().replace("::20", "::5"))
        importlib.reload(sys.modules["edited_detectors"])  # the driver's copy, as %autoreload would
        second = scan({"ohlcv_path": str(small_universe), "detectors": ["edited_detectors:every"]}, client=client,
                      out_dir=str(tmp_path / "v2"), progress=False)
    finally:
        sys.path.remove(str(folder))
    counts = [len(r.forward("edited_detectors:every")) for r in (first, second)]
    assert counts[1] > 3 * counts[0], counts


EDITED_PACKAGE = {  # a detector whose threshold is imported from a helper module of its package
    "__init__.py": "",
    "helpers.py": "MULTIPLE = 2.0\n",
    "dets.py": "import pandas as pd\nfrom {package}.helpers import MULTIPLE\n\n\ndef spikes(df, cfg):\n"
               "    median = df['volume'].rolling(20, min_periods=1).median()  # causal: the check passes it\n"
               "    hits = (df['volume'] > MULTIPLE * median).to_numpy()\n"
               "    return pd.DataFrame({{'date': df['date'][hits], 'score': (df['volume'] / median)[hits]}})\n",
}


@pytest.mark.parametrize("where", ["serial", "client"])
def test_a_second_scan_in_one_process_runs_the_code_edited_since_the_first(tmp_path, small_universe, request, where):
    # a notebook: scan(), edit the detector's helper module, scan() again: the second scan ran the
    # code imported for the first (2,158 events against 60), and run.json recorded the new code's digest
    import os
    from harness import scan
    package = f"edited_{where}"
    for name, text in EDITED_PACKAGE.items():
        path = tmp_path / "mods" / package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(package=package))
    helpers = tmp_path / "mods" / package / "helpers.py"
    settings = {"ohlcv_path": str(small_universe), "detectors": [f"{package}.dets:spikes"], "flush_every": 3}
    runs_on = {"client": request.getfixturevalue("client")} if where == "client" else {"workers": 1}
    sys.path.insert(0, str(tmp_path / "mods"))  # the client's workers cannot import it: it is shipped
    try:
        first = scan(settings, out_dir=str(tmp_path / "first"), progress=False, **runs_on)
        helpers.write_text("MULTIPLE = 1.5\n")  # the same size, within the same second
        stat = helpers.stat()
        os.utime(helpers, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
        second = scan(settings, out_dir=str(tmp_path / "second"), progress=False, **runs_on)
    finally:
        sys.path.remove(str(tmp_path / "mods"))
        for name in [n for n in sys.modules if n.split(".")[0] == package]:
            del sys.modules[name]
    config = write_config(tmp_path / "fresh.yaml", **settings, out_dir=str(tmp_path / "fresh"))
    fresh = run_cli("--config", str(config), "--workers", "1",
                    env=cli_env(PYTHONPATH=f"{REPO}:{tmp_path / 'mods'}"))
    assert fresh.returncode == 0, fresh.stderr
    assert output_files(tmp_path / "second") == output_files(tmp_path / "fresh")
    assert output_files(tmp_path / "first") != output_files(tmp_path / "fresh"), "the edit changes the events"
    code = json.loads((tmp_path / "fresh" / "run.json").read_text())["detector_code"]
    assert second.run["detector_code"] == code != first.run["detector_code"]


def test_a_result_read_after_its_folder_holds_another_run_raises(tmp_path, small_universe):
    # it mixed two runs: r.run said 3 symbols, r.summary showed the next run's, and r.events returned
    # a leftover file of a detector the next run did not have
    from harness import scan
    from harness.api import ScanResult
    from harness.errors import RunReplaced
    symbols = sorted(p.name.split("=", 1)[1] for p in small_universe.iterdir())
    settings = {"ohlcv_path": str(small_universe), "workers": 1, "out_dir": str(tmp_path / "out"), "progress": False}
    first = scan(detectors=["gap", "volume_spike"], symbols=symbols[:3], **settings)
    assert first.run["symbols"]["total"] == 3 and len(first.summary)  # read once: kept, but checked again
    second = scan(detectors=["gap"], symbols=symbols[3:9], **settings)
    said = (f"{tmp_path / 'out'} now holds another run (id {second.run_id}, started {second.started}), not the run "
            f"this result was read from (id {first.run_id}, started {first.started}); run the scan again, or open "
            f"the folder again: ScanResult({str(tmp_path / 'out')!r})")
    for read in (lambda r: r.summary, lambda r: r.events("volume_spike"), lambda r: r.run, lambda r: r.forward("gap"),
                 lambda r: r.market, lambda r: r.report_path):
        with pytest.raises(RunReplaced) as info:
            read(first)
        assert str(info.value) == said
    assert repr(first) == f"ScanResult({str(tmp_path / 'out')!r}): {said}", "a notebook's old cell shows it, no traceback"
    assert first._repr_html_() == f"<p>{html.escape(repr(first))}</p>"
    assert first.run_id != second.run_id and len(first.run_id) == 32
    assert second.run["symbols"]["total"] == 6 and set(second.summary["detector"]) == {"gap"}
    again = ScanResult(tmp_path / "out")
    assert again == second and again.run_id == json.loads((tmp_path / "out" / "run.json").read_text())["run_id"]
    pd.testing.assert_frame_equal(again.forward("gap"), pd.read_parquet(tmp_path / "out" / "gap" / "forward.parquet"))


@pytest.mark.parametrize("args, kwargs, message", [
    ((5,), {}, "scan(): config must be the path of a YAML file, a mapping of config keys or None; got int 5"),
    ((["x"],), {}, "scan(): config must be the path of a YAML file, a mapping of config keys or None; "
                   "got list ['x']"),
    (({}, "tcp://host:8786"), {}, "scan(): client must be a distributed.Client; got str 'tcp://host:8786': for a "
                                  "scheduler's address pass scheduler_address='tcp://host:8786'"),
    (({},), {"client": 8786}, "scan(): client must be a distributed.Client; got int 8786"),
    (({},), {"resume": "no"}, "scan(): resume must be True or False; got str 'no'"),
    (({},), {"progress": None}, "scan(): progress must be True or False; got NoneType None"),
])
def test_a_wrong_argument_is_one_line_naming_it(tmp_path, args, kwargs, message):
    from harness import scan
    from harness.errors import ConfigError
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        scan(*args, out_dir=str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_client_closed_before_or_during_the_scan_is_one_line(tmp_path, small_universe):
    from distributed import Client, LocalCluster
    from harness import scan
    from harness.errors import ConfigError, ScanError
    gate = tmp_path / "gate"  # never there while the scan runs: its tasks wait (user_detectors.gated)
    keys = {"ohlcv_path": str(small_universe), "detectors": ["user_detectors:gated"], "symbols_per_task": 1}
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0",
                      env={"SCAN_TEST_GATE": str(gate), "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}) as cluster:
        closed = Client(cluster)
        closed.close()
        with pytest.raises(ConfigError, match=r"^scan\(\): the Dask client is closed, not running; pass an open "
                                              "Client, or none to let the scan start its own cluster$"):
            scan(keys, client=closed, out_dir=str(tmp_path / "before"), progress=False)
        assert not (tmp_path / "before").exists()

        client = Client(cluster)

        def close_once_tasks_run() -> None:
            while not any(client.processing().values()):
                time.sleep(0.05)
            client.close()

        closer = threading.Thread(target=close_once_tasks_run, daemon=True)
        closer.start()
        try:
            with pytest.raises(ScanError, match="^the Dask client was closed during the run; no symbol was flushed "
                                                "yet, so there is nothing to resume$") as caught:
                scan(keys, client=client, out_dir=str(tmp_path / "during"), progress=False)
        finally:
            gate.touch()  # the workers' waiting tasks end
        closer.join()
        assert type(caught.value) is ScanError
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
