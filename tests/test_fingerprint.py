"""--resume keeps staged results only when nothing that decided them changed: the detectors' code,
their parameters, the config, the universe, or a symbol's input files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import TESTS, REPO, cli_env, run_cli, write_config
from harness.outdir import STAGING

FIRST = textwrap.dedent('''
    import pandas as pd

    def spikes(df, cfg):
        """Days whose volume exceeds `multiple` x the symbol's median; breaks on one symbol."""
        if df["volume"].iloc[0] == {marker}:
            raise RuntimeError("cannot handle this symbol yet")
        hits = df[df["volume"] > cfg["multiple"] * df["volume"].median()]
        return pd.DataFrame({{"date": hits["date"], "score": hits["volume"] / df["volume"].median()}})

    spikes.defaults = {{"multiple": 2.0}}
''')


def failing_run(tmp_path: Path, small_universe: Path) -> tuple[Path, dict]:
    """A user's detector that raises on the 14th symbol: the run stops with chunks 0-3 staged."""
    symbols = sorted(p.name.split("=", 1)[1] for p in small_universe.iterdir())
    import pandas as pd
    first_volume = pd.read_parquet(small_universe / f"symbol={symbols[13]}")["volume"].iloc[0]
    module = tmp_path / "mods" / "mine.py"
    module.parent.mkdir()
    module.write_text(FIRST.format(marker=repr(float(first_volume))))
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          detectors=["mine:spikes", "gap"], flush_every=3,
                          lookahead_check="off")  # spikes' whole-series median looks ahead: not this test's point
    env = cli_env(PYTHONPATH=f"{REPO}:{TESTS}:{module.parent}")
    proc = run_cli("--config", str(config), "--workers", "1", env=env)
    assert proc.returncode == 1 and "symbol" in proc.stderr and "mine:spikes" in proc.stderr, proc.stderr
    assert json.loads((tmp_path / "out" / STAGING / "state.json").read_text())["chunks"] == [0, 1, 2, 3]
    return config, env


def test_resume_after_the_detectors_code_changed_is_refused(tmp_path, small_universe):
    # the case: the user fixes the detector that failed (and changes what it finds) and
    # resumes, as the error suggests: the staged chunks came from the old code
    config, env = failing_run(tmp_path, small_universe)
    module = tmp_path / "mods" / "mine.py"
    module.write_text(module.read_text().replace("raise RuntimeError", "pass  # fixed"))
    resumed = run_cli("--config", str(config), "--workers", "1", "--resume", env=env)
    assert resumed.returncode == 1, resumed.stderr
    assert resumed.stderr.strip().splitlines()[-1] == (
        f"error: --resume: the code of detector 'mine:spikes' ({module}) changed since the unfinished run in "
        f"{tmp_path / 'out' / STAGING} staged its results; rerun without --resume to start over")
    assert "Processed" not in resumed.stderr, "refused before scanning anything"


def test_resume_after_a_parameter_changed_is_refused(tmp_path, small_universe):
    config, env = failing_run(tmp_path, small_universe)
    module = tmp_path / "mods" / "mine.py"
    module.write_text(module.read_text().replace("raise RuntimeError", "pass  # fixed"))
    other = write_config(tmp_path / "other.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                         detectors=["mine:spikes", "gap"], flush_every=3, params={"gap": {"min_gap": 0.05}})
    resumed = run_cli("--config", str(other), "--workers", "1", "--resume", env=env)
    assert resumed.returncode == 1
    assert "error: --resume: the code of detector 'mine:spikes'" in resumed.stderr
    assert "the parameters of detector 'gap' changed since" in resumed.stderr


def test_resume_with_the_same_code_and_settings_goes_on(tmp_path, small_universe):
    config, env = failing_run(tmp_path, small_universe)
    resumed = run_cli("--config", str(config), "--workers", "1", "--resume", "--on-error", "skip", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming: 12/20 symbols already flushed" in resumed.stderr


@pytest.mark.parametrize("change", ["rewritten", "touched", "added"])  # a removed file: as an added one
def test_resume_after_a_staged_symbols_files_changed_is_refused(tmp_path, small_universe, change):
    import os
    import shutil
    data = tmp_path / "data"
    shutil.copytree(small_universe, data)
    config, env = failing_run(tmp_path, data)
    symbol = sorted(p.name.split("=", 1)[1] for p in data.iterdir())[4]  # in chunk 1, staged
    folder = data / f"symbol={symbol}"
    part = sorted(folder.glob("*.parquet"))[0]
    if change == "rewritten":  # new bars, same file name
        import pandas as pd
        frame = pd.read_parquet(part)
        frame.assign(close=frame["close"] * 1.01).to_parquet(part)
    elif change == "touched":
        os.utime(part, ns=(part.stat().st_atime_ns, part.stat().st_mtime_ns + 10**9))
    elif change == "added":
        shutil.copy(part, folder / "extra.parquet")
    else:
        part.unlink()
    module = tmp_path / "mods" / "mine.py"
    module.write_text(module.read_text())  # the same code: only the data changed
    resumed = run_cli("--config", str(config), "--workers", "1", "--resume", "--on-error", "skip", env=env)
    assert resumed.returncode == 1
    assert resumed.stderr.strip().splitlines()[-1] == (
        f"error: --resume: the input files of 1 staged symbol(s) changed since the unfinished run staged them "
        f"({symbol}: files added, removed, rewritten or touched); rerun without --resume to start over")
