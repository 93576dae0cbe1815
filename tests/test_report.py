"""report.html: pure parts, and the real page in headless Chromium (no console errors, every detector)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli, write_config
from harness.report import families, nice_ticks
from test_run import DETECTORS

CHROMIUM = "/usr/bin/chromium"


def test_families_put_each_variant_beside_its_baseline():
    baselines = {"a": None, "a_fast": "a", "b": None, "c_var": "c", "a_slow": "a"}
    assert families(["a_fast", "b", "a", "c_var", "a_slow"], baselines) == [["a", "a_fast", "a_slow"], ["b"], ["c_var"]]


@pytest.fixture(scope="module")
def report(tmp_path_factory, small_universe) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    config = write_config(tmp / "c.yaml", ohlcv_path=str(small_universe), detectors=DETECTORS,
                          out_dir=str(tmp / "out"), workers=1)
    proc = run_cli("--config", str(config))
    assert proc.returncode == 0, proc.stderr
    return tmp / "out" / "report.html"


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.031, 0.012) == [-0.03, -0.02, -0.01, 0.0, 0.01]
    assert nice_ticks(2021, 2025) == [2021, 2022, 2023, 2024, 2025]


def test_report_is_self_contained(report):
    text = report.read_text()
    assert text.count("<svg") == 6 * len(families(DETECTORS, {"volume_spike_trend": "volume_spike",
                                                             "breakout_52w_volume": "breakout_52w",
                                                             "rsi_oversold_fast": "rsi_oversold"}))
    # the page must open offline: nothing fetched from anywhere, no script at all
    assert "<script" not in text and not re.search(r"\s(src|href)=", text)


def test_report_loads_in_headless_chromium_and_shows_every_detector(report, tmp_path):
    """At 1400 px and on a phone-sized viewport: no console error, every chart drawn, every detector
    named; the numbers tables say what summary.csv says."""
    assert shutil.which(CHROMIUM), "Chromium is missing: `make test` installs Debian's chromium package"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            errors: list[str] = []
            seen = {}
            for name, viewport in (("wide", {"width": 1400, "height": 1000}), ("phone", {"width": 390, "height": 844})):
                page = browser.new_page(viewport=viewport)
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(report.as_uri())
                seen[name] = {
                    "text": page.inner_text("body"),
                    "drawn": page.evaluate("() => [...document.querySelectorAll('svg')].filter(s => "
                                           "s.getBoundingClientRect().width > 300 && s.querySelector('polyline, rect'))"
                                           ".length"),
                    "rows": page.evaluate("() => [...document.querySelectorAll('table.numbers tr')].slice(0)"
                                          ".map(r => [...r.children].map(c => c.innerText))"),
                    # nothing wider than the screen but the tables, which scroll in their own box
                    "overflow": page.evaluate("() => document.documentElement.scrollWidth"),
                }
                page.screenshot(path=str(tmp_path / f"report-{name}.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    for name, width in (("wide", 1400), ("phone", 390)):
        assert seen[name]["drawn"] == 36  # 6 families x 6 charts, each with something drawn in it
        assert seen[name]["overflow"] <= max(width, 340), (name, seen[name]["overflow"])  # a chart is 330 px
        for detector in DETECTORS:
            assert detector in seen[name]["text"], f"{detector} missing from the report"
        assert (tmp_path / f"report-{name}.png").stat().st_size > 50_000  # a blank page would be a few KB
    text = seen["wide"]["text"]
    assert "cumulative abnormal return after the event" in text and "distribution of 20-bar abnormal returns" in text
    # the numbers: every row of summary.csv, as it says them (stars where abn_significant is)
    summary = pd.read_csv(report.parent / "summary.csv")
    summary[["baseline", "note"]] = summary[["baseline", "note"]].astype(object).fillna("")
    rows = [r for r in seen["wide"]["rows"] if r[0] != "detector"]
    assert len(rows) == len(summary)
    shown = {(r[0], int(r[1])): r for r in rows}
    for row in summary.itertuples():
        cells = shown[(row.detector, row.window)]
        assert cells[2] == str(row.abn_valid) and cells[3] == f"{100 * row.abn_mean:+.2f}%"
        t = "-" if pd.isna(row.abn_t) else f"{row.abn_t:.2f}" + ("*" if row.abn_significant else "")
        assert cells[5] == t
        if row.baseline and not pd.isna(row.vs_baseline):
            vs = "-" if pd.isna(row.vs_baseline_t) else f"{row.vs_baseline_t:.2f}" + ("*" if row.vs_significant else "")
            assert cells[8] == vs and cells[7] == f"{100 * row.vs_baseline:+.2f}%"
        assert cells[9] == row.note
