"""harness.scan from a Python script, as a user runs it: the README's example, and a script without
the `if __name__ == "__main__":` guard (issue 35). Real scripts in subprocesses, real LocalClusters."""

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
