"""--resume keeps staged results only when nothing that decided them changed: the detectors' code
(every module of a detector's package, a partial's function), their parameters, the config, the
universe, or a symbol's input files."""

from __future__ import annotations

import json
import subprocess
import sys
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

# The same detector as a package whose threshold is in a helper module (the case), and as a
# functools.partial of a function of the module (its digest was functools.py's).
PACKAGE = {"mypkg/__init__.py": "", "mypkg/helpers.py": "MULTIPLE = 2.0\n",
           "mypkg/dets.py": FIRST.replace("import pandas as pd", "import pandas as pd\nfrom mypkg import helpers")
                                 .replace('cfg["multiple"]', "helpers.MULTIPLE")
                                 .replace("spikes.defaults = {{\"multiple\": 2.0}}", "")}
PARTIAL = {"mine.py": FIRST.replace("def spikes(df, cfg):", "def _spikes(df, cfg, multiple):")
                           .replace('cfg["multiple"]', "multiple")
                           .replace("spikes.defaults = {{\"multiple\": 2.0}}",
                                    "import functools\nspikes = functools.partial(_spikes, multiple=2.0)")}


def failing_run(tmp_path: Path, small_universe: Path, files: dict[str, str] | None = None,
                detector: str = "mine:spikes") -> tuple[Path, dict]:
    """A user's detector that raises on the 14th symbol: the run stops with chunks 0-3 staged.
    files: the user's code under tmp_path/mods (path -> text with a {marker}), mine.py by default."""
    symbols = sorted(p.name.split("=", 1)[1] for p in small_universe.iterdir())
    import pandas as pd
    first_volume = pd.read_parquet(small_universe / f"symbol={symbols[13]}")["volume"].iloc[0]
    for name, text in (files or {"mine.py": FIRST}).items():
        path = tmp_path / "mods" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(marker=repr(float(first_volume))))
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          detectors=[detector, "gap"], flush_every=3,
                          lookahead_check="off")  # spikes' whole-series median looks ahead: not this test's point
    env = cli_env(PYTHONPATH=f"{REPO}:{TESTS}:{tmp_path / 'mods'}")
    proc = run_cli("--config", str(config), "--workers", "1", env=env)
    assert proc.returncode == 1 and "symbol" in proc.stderr and detector in proc.stderr, proc.stderr
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


@pytest.mark.parametrize("layout", ["a helper module of its package", "a partial"])
def test_resume_after_code_the_detector_runs_changed_is_refused(tmp_path, small_universe, layout):
    # the cases: a threshold in mypkg/helpers.py, and a partial (digested as functools.py):
    # both resumed with exit 0, mixing the chunks of the old code with the new
    if layout == "a partial":
        config, env = failing_run(tmp_path, small_universe, PARTIAL)
        edited = where = tmp_path / "mods" / "mine.py"
        edited.write_text(edited.read_text().replace("raise RuntimeError", "pass  # fixed"))
        detector = "mine:spikes"
    else:
        config, env = failing_run(tmp_path, small_universe, PACKAGE, "mypkg.dets:spikes")
        edited, where = tmp_path / "mods" / "mypkg" / "helpers.py", tmp_path / "mods" / "mypkg"
        edited.write_text("MULTIPLE = 3.0\n")
        detector = "mypkg.dets:spikes"
    resumed = run_cli("--config", str(config), "--workers", "1", "--resume", "--on-error", "skip", env=env)
    assert resumed.returncode == 1, resumed.stderr
    assert resumed.stderr.strip().splitlines()[-1] == (
        f"error: --resume: the code of detector {detector!r} ({where}) changed since the unfinished run in "
        f"{tmp_path / 'out' / STAGING} staged its results; rerun without --resume to start over")


def test_a_detectors_code_is_its_package_and_what_a_partial_or_object_calls(tmp_path, monkeypatch):
    import functools
    import sys
    from harness.detectors import BASELINES, VARIANT_FUNCTIONS
    from harness.fingerprint import source_digest
    package = tmp_path / "digested"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "dets.py").write_text("def det(df, cfg, k=1):\n    return df\n\nclass Det:\n"
                                     "    def __call__(self, df, cfg):\n        return df\n")
    (package / "sub" / "unused.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from digested.dets import Det, det
    shapes = [det, functools.partial(det, k=2), functools.partial(functools.partial(det, k=2), k=3), Det()]
    first = [source_digest(f) for f in shapes]
    assert {where for _, where in first} == {str(package)}
    assert len({d for d, _ in first[:3]}) == 3, "a partial's arguments are part of its digest"
    # ... but not the memory addresses in their repr (a function, an object), which change in every process
    assert source_digest(functools.partial(det, k=Det())) == source_digest(functools.partial(det, k=Det()))
    assert source_digest(functools.partial(det, k=Det)) != source_digest(functools.partial(det, k=det))
    (package / "sub" / "unused.py").write_text("X = 2\n")  # every module of the package, imported or not
    assert all(source_digest(f)[0] != d for f, (d, _) in zip(shapes, first))
    sys.modules.pop("digested.dets"), sys.modules.pop("digested")
    # the registered detectors: baseline/ and the variants, never the rest of the harness
    wheres = {source_digest(f)[1] for f in [*BASELINES.values(), *VARIANT_FUNCTIONS.values()]}
    assert wheres == {f"{REPO / 'baseline'}, {REPO / 'harness' / 'variants.py'}"}


def test_resume_after_a_parameter_changed_is_refused(tmp_path, small_universe):
    config, env = failing_run(tmp_path, small_universe)
    module = tmp_path / "mods" / "mine.py"
    module.write_text(module.read_text().replace("raise RuntimeError", "pass  # fixed"))
    other = write_config(tmp_path / "other.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                         detectors=["mine:spikes", "gap"], flush_every=3, params={"gap": {"min_gap": 0.05}},
                         lookahead_check="off")  # as the run it resumes
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


def test_a_partials_digest_is_the_same_in_every_process(tmp_path):
    # a set of strings iterates in another order in each process (randomised string hashes)
    (tmp_path / "setpartial.py").write_text(
        "import functools\n\ndef picky(df, cfg, skip=()):\n    return df\n\n"
        "bound = functools.partial(picky, skip={'alpha', 'beta', 'gamma', 'delta', 'epsilon'}, how={'x': 1})\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import setpartial; "
            "from harness.fingerprint import source_digest; print(source_digest(setpartial.bound)[0])")
    digests = {subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=cli_env(PYTHONHASHSEED=str(seed)),
                              capture_output=True, text=True, check=True).stdout for seed in range(4)}
    assert len(digests) == 1, digests
