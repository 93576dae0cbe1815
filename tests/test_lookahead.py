"""No look-ahead: the events a detector reports up to row t do not change when rows after t are cut."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import output_files, run_cli, write_config
from harness.config import load_config
from harness.detectors import REGISTERED, resolve_detectors
from harness.errors import ConfigError
from harness.io import list_symbols, read_symbol_data
from harness.task import CheckedEvents, first_change


@pytest.fixture(scope="module")
def frames(small_universe):
    return [read_symbol_data(s, str(small_universe), 10_000) for s in list_symbols(str(small_universe))]


@pytest.mark.parametrize("name", REGISTERED)
def test_events_up_to_t_do_not_depend_on_later_bars(frames, name):
    spec = resolve_detectors((name,), {})[0]
    full = {i: spec.func(frame, spec.params) for i, frame in enumerate(frames)}

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(which=st.integers(0, len(frames) - 1), cut=st.floats(0.0, 1.0))
    def check(which, cut):
        frame = frames[which]
        t = int(cut * (len(frame) - 1))
        cut_events = spec.func(frame.iloc[: t + 1].copy(), spec.params)
        expected = full[which][full[which]["date"] <= frame["date"].iloc[t]]
        assert cut_events["date"].tolist() == expected["date"].tolist()
        np.testing.assert_allclose(cut_events["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-12)

    check()
    assert sum(len(e) for e in full.values()) > 0, f"{name} never fired on the sample universe"


# --- the check on every run (lookahead_check; harness.task.check_lookahead) ---

PEEK, RANK, CAUSAL = "user_detectors:peek_ahead", "user_detectors:whole_rank", "user_detectors:causal_jump"
PEEK_ONE = "user_detectors:peek_one_bar"


def _events(rows, scores) -> CheckedEvents:
    return CheckedEvents(np.array(rows, dtype=np.int64), np.array(scores, dtype="float64"), {})


def test_first_change_names_the_first_event_that_differs():
    dates = pd.bdate_range("2024-01-01", periods=10).to_numpy()
    full = _events([1, 3, 6, 8], [0.5, 0.25, 0.75, 1.0])
    assert first_change(full, _events([1, 3, 6], [0.5, 0.25, 0.75]), dates, 6) == ""  # row 8 is after the cut
    assert first_change(full, _events([1, 3], [0.5, 0.25 * (1 + 1e-13)]), dates, 5) == ""  # within 1e-12
    assert first_change(_events([2], [np.nan]), _events([2], [np.nan]), dates, 5) == ""
    assert first_change(full, _events([1, 3], [0.5, 0.2]), dates, 5) == (
        "its event of 2024-01-04 has score 0.2 on the cut bars but 0.25 on the full history")
    assert first_change(full, _events([1], [0.5]), dates, 5) == (
        "its event of 2024-01-04 (score 0.25 on the full history) is gone on the cut bars")
    assert first_change(full, _events([1, 2, 3], [0.5, 0.1, 0.25]), dates, 5) == (
        "it fires on 2024-01-03 (score 0.1) on the cut bars but not on the full history")
    assert first_change(_events([], []), _events([4], [1.0]), dates, 5).startswith("it fires on 2024-01-05")


def test_lookahead_check_takes_fail_warn_or_off(small_universe):
    assert load_config({"ohlcv_path": str(small_universe)}).lookahead_check == "fail"
    with pytest.raises(ConfigError, match=r"^config key 'lookahead_check': must be 'fail' or 'warn' or 'off', "
                                          r"got 'maybe'$"):
        load_config({"ohlcv_path": str(small_universe), "lookahead_check": "maybe"})


def _scan(tmp_path, universe, detectors, **keys):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path / "config.yaml", ohlcv_path=str(universe), out_dir=str(tmp_path / "out"),
                          detectors=list(detectors), **{"workers": 1, **keys})
    return run_cli("--config", str(config), "-q"), tmp_path / "out"


def test_the_cuts_are_at_the_detectors_own_events_nearest_to_a_quarter_half_and_three_quarters():
    from harness.task import cut_bars
    assert cut_bars(np.array([], dtype=np.int64), 101) == [25, 50, 75]
    assert cut_bars(np.array([3, 40, 90]), 101) == [40, 90]  # 25 and 50: nearest 40; 75: 90
    assert cut_bars(np.array([60]), 101) == [60]


@pytest.mark.parametrize("detector", [PEEK, RANK, PEEK_ONE])
def test_a_detector_that_looks_ahead_is_refused_in_one_line(tmp_path, small_universe, detector):
    proc, out = _scan(tmp_path, small_universe, [CAUSAL, detector])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: detector '{detector}' looks ahead: on symbol '")
    assert " cut after 20" in proc.stderr and proc.stderr.rstrip().endswith("; fix it, or set lookahead_check: warn")
    assert not (out / "summary.csv").exists()


def test_a_detector_that_looks_ahead_is_refused_on_dask_too(tmp_path, small_universe):
    proc, _ = _scan(tmp_path, small_universe, [PEEK], workers=2)
    assert proc.returncode == 2, proc.stderr
    assert f"error: detector '{PEEK}' looks ahead: on symbol '" in proc.stderr


def test_a_causal_detector_and_the_built_ins_pass(tmp_path, small_universe):
    proc, out = _scan(tmp_path, small_universe, [CAUSAL, *REGISTERED])
    assert proc.returncode == 0, proc.stderr
    facts = json.loads((out / "run.json").read_text())["lookahead"]
    assert facts["check"] == "fail" and len(facts["symbols"]) == 3
    assert facts["detectors"] == {name: "ok" for name in [CAUSAL, *REGISTERED]}


def test_warn_runs_it_with_a_note_and_no_star(tmp_path, small_universe):
    proc, out = _scan(tmp_path, small_universe, [CAUSAL, PEEK], lookahead_check="warn")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    peek = summary[summary["detector"] == PEEK]
    assert peek["note"].str.startswith("looks ahead (lookahead_check: warn)").all()
    assert peek["abn_t"].max() > 5 and not peek["abn_significant"].any() and not peek["vs_significant"].any()
    assert not summary[summary["detector"] == CAUSAL]["note"].str.contains("looks ahead").any()
    assert f"warning: detector '{PEEK}' looks ahead: on symbol '" in proc.stdout
    detectors = json.loads((out / "run.json").read_text())["lookahead"]["detectors"]
    assert detectors[CAUSAL] == "ok" and detectors[PEEK].startswith(f"detector '{PEEK}' looks ahead: ")
    findings = (out / "report.html").read_text().split("<h2>Findings</h2>")[1].split("<h2>")[0]
    assert f"<td>{PEEK}</td><td class=note>looks ahead: not judged</td>" in findings, findings
    assert "A detector that looks ahead (lookahead_check: warn) is not judged." in findings


def test_a_variant_compared_with_a_detector_that_looks_ahead_is_not_judged(tmp_path, small_universe):
    proc, out = _scan(tmp_path, small_universe, [
        {"name": "peek", "detector": PEEK}, {"name": "causal", "detector": CAUSAL, "baseline": "peek"}],
        lookahead_check="warn")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert not summary["vs_significant"].any()
    assert summary[summary["detector"] == "causal"]["note"].str.endswith(
        "vs baseline: its baseline looks ahead (lookahead_check: warn)").all()
    assert pd.to_numeric(summary["vs_baseline_p"]).min() < 1e-6, "it would be starred without the check"
    findings = (out / "report.html").read_text().split("<h2>Findings</h2>")[1].split("<h2>")[0]
    assert "<b>causal</b> is not judged against peek: one of them looks ahead" in findings
    assert findings.count("looks ahead: not judged") == 4


def test_off_runs_no_check(tmp_path, small_universe):
    proc, out = _scan(tmp_path, small_universe, [PEEK], lookahead_check="off")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads((out / "run.json").read_text())["lookahead"]
    assert facts == {"check": "off", "symbols": [], "detectors": {PEEK: "not checked"}}
    assert "*" in proc.stdout  # without the check, the peeking detector earns its star


def test_a_detector_that_raises_on_the_cut_bars_is_not_checked_and_its_symbols_scan_as_without_the_check(
        tmp_path, small_universe):
    long = "user_detectors:needs_long_history"
    checked, out = _scan(tmp_path / "checked", small_universe, [long, "gap"])
    plain, plain_out = _scan(tmp_path / "plain", small_universe, [long, "gap"], lookahead_check="off")
    assert checked.returncode == 0 == plain.returncode, checked.stderr
    assert output_files(out) == output_files(plain_out), "the check never changes a staged byte"
    found = json.loads((out / "run.json").read_text())["lookahead"]["detectors"]
    assert found["gap"] == "ok" and found[long].startswith(f"detector '{long}' on symbol '") \
        and "not checked: it raises on the bars cut after " in found[long] and "need 300 bars" in found[long]
    assert f"note: detector '{long}' on symbol '" in checked.stdout


def _stopped_at_the_last_symbol(tmp_path, universe, detectors, **keys):
    """A run over a copy of `universe` that stops at its last symbol (an unreadable file) after
    staging the first chunks, the checked symbols among them; the file is mended afterwards, so
    that --resume can finish the run. Returns (the copy, the run's output folder)."""
    data = tmp_path / "data"
    shutil.copytree(universe, data)
    last = sorted(data.glob("symbol=*"))[-1] / "part-0.parquet"
    good = last.read_bytes()
    last.write_bytes(b"not parquet")
    stopped, out = _scan(tmp_path / "run", data, detectors, flush_every=3, **keys)
    assert stopped.returncode == 2 and "cannot read file" in stopped.stderr, stopped.stderr
    last.write_bytes(good)
    return data, out


def test_a_resumed_run_keeps_the_findings_of_the_symbols_checked_before(tmp_path, small_universe):
    # fixed, --resume must report the same check as a fresh run
    data, out = _stopped_at_the_last_symbol(tmp_path, small_universe, [PEEK, CAUSAL], lookahead_check="warn")
    resumed = run_cli("--config", str(tmp_path / "run" / "config.yaml"), "--resume", "-q")
    fresh, fresh_out = _scan(tmp_path / "fresh", data, [PEEK, CAUSAL], flush_every=3, lookahead_check="warn")
    assert resumed.returncode == 0 == fresh.returncode, resumed.stderr
    assert output_files(out) == output_files(fresh_out)
    facts = [json.loads((folder / "run.json").read_text())["lookahead"] for folder in (out, fresh_out)]
    assert facts[0] == facts[1] and facts[0]["symbols"] == sorted(p.name[7:] for p in sorted(data.iterdir())[:3])


def test_resuming_with_another_mode_of_the_check_is_refused(tmp_path, small_universe):
    # staged with the check off, resumed with fail: the peek would never have been checked
    _stopped_at_the_last_symbol(tmp_path, small_universe, [PEEK_ONE], lookahead_check="off")
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("lookahead_check: 'off'", "lookahead_check: fail"))
    resumed = run_cli("--config", str(config), "--resume")
    assert resumed.returncode == 1 and "error: --resume: the config changed" in resumed.stderr, resumed.stderr
