"""harness.scan from a Python script, as a user runs it: the README's example, a script without
the `if __name__ == "__main__":` guard, and ScanResult's notebook helpers (issue 35)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from conftest import REPO, write_config

MY_IDEA = "def my_idea(df, cfg):\n    return df.loc[df.close > df.close.shift(1) * 1.03, ['date']].assign(score=1.0)\n"


def run_script(folder: Path, text: str) -> subprocess.CompletedProcess:
    """`text` as folder/script.py, run by `python script.py` in `folder` with the repo importable."""
    (folder / "script.py").write_text(text)
    return subprocess.run([sys.executable, "script.py"], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_readmes_python_example_runs_as_a_script(tmp_path, small_universe):
    readme = (REPO / "README.md").read_text()
    example = re.search(r"## From Python / Jupyter.*?```python\n(.*?)```", readme, re.S)[1]
    write_config(tmp_path / "config.yaml", ohlcv_path=str(small_universe), dashboard_address="127.0.0.1:0")
    (tmp_path / "mydetectors.py").write_text(MY_IDEA)
    proc = run_script(tmp_path, example)
    assert proc.returncode == 0, proc.stderr
    assert "mydetectors:my_idea" in proc.stdout and "Traceback" not in proc.stderr
    summary = pd.read_csv(tmp_path / "results" / "momentum" / "summary.csv")
    assert set(summary.detector) == {"volume_spike", "volume_spike_trend", "mydetectors:my_idea"}


def test_a_script_without_the_main_guard_gets_one_line_saying_to_add_it(tmp_path, small_universe):
    scan = f"scan(ohlcv_path={str(small_universe)!r}, out_dir='out', workers=2, detectors=['gap'], " \
           "dashboard_address='127.0.0.1:0', progress=False)"
    proc = run_script(tmp_path, f"from harness import scan\n{scan}\nprint('done')\n")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'script.py'} runs the scan on worker processes, which import it again: put the code "
        "that calls scan() under `if __name__ == \"__main__\":` (or run with workers: 1)")
    assert not (tmp_path / "out" / "summary.csv").exists()
    guarded = run_script(tmp_path, f"from harness import scan\nif '__main__' == __name__:\n    {scan}\n    print('done')\n")
    assert guarded.returncode == 0 and guarded.stdout.endswith("done\n"), guarded.stderr


def test_a_serial_scan_needs_no_guard(tmp_path, small_universe):
    proc = run_script(tmp_path, textwrap.dedent(f"""\
        from harness import scan
        scan(ohlcv_path={str(small_universe)!r}, out_dir='out', workers=1, detectors=['gap'], progress=False)
        print('done')
        """))
    assert proc.returncode == 0 and proc.stdout.endswith("done\n"), proc.stderr


def test_a_scan_result_joins_events_with_returns_and_shows_in_a_notebook(tmp_path, small_universe):
    """Issue 35's notebook helpers: frame(name), report_path, _repr_html_."""
    from harness import scan
    result = scan(ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"), workers=1, progress=False,
                  detectors=["gap", "user_detectors:with_range"])
    frame, events, forward = (result.frame("user_detectors:with_range"), result.events("user_detectors:with_range"),
                              result.forward("user_detectors:with_range"))
    assert list(frame.columns) == ["symbol", "date", "detector", "score", "range", "close", "fwd_5", "fwd_10",
                                   "fwd_20", "fwd_40", "abn_5", "abn_10", "abn_20", "abn_40"]
    pd.testing.assert_frame_equal(frame[events.columns], events)
    by_event = forward.set_index(["symbol", "date"])
    joined = frame.set_index(["symbol", "date"])
    pd.testing.assert_series_equal(joined["abn_20"], by_event.loc[joined.index, "abn_20"])
    assert result.report_path == tmp_path / "out" / "report.html" and result.report_path.is_file()
    shown = result._repr_html_()
    numbers = shown[shown.index("<table border"):]  # after the findings
    assert numbers.count("<tr") == len(result.summary) + 1 and "<th>abn_t</th>" in shown and "<th>stars</th>" in shown
    assert numbers.count("<td>*</td>") == int(result.summary["abn_significant"].sum())
    assert "<h2>Findings</h2><p>Does each variant beat its baseline?" in shown  # with_range varies gap
    table = result.summary.assign(abn_significant=[True] + [False] * (len(result.summary) - 1))
    table.to_csv(tmp_path / "out" / "summary.csv", index=False)
    again = type(result)(result.out_dir)._repr_html_()
    assert again[again.index("<table border"):].count("<td>*</td>") == 1


def test_a_scan_results_findings_say_whether_each_variant_beats_its_baseline(tmp_path, small_universe):
    from harness import scan
    result = scan(ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"), workers=1, progress=False,
                  detectors=["volume_spike", "volume_spike_trend"])
    shown = result._repr_html_()
    assert "Does each variant beat its baseline?" in shown and "volume_spike_trend vs volume_spike" in shown
    assert shown.count("volume_spike_trend vs volume_spike</td>") == len(result.run["config"]["forward_windows"])
