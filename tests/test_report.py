"""report.html: pure parts, and the real page in headless Chromium (no console errors, every detector)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

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
    assert text.count("<svg") == 5 * len(families(DETECTORS, {"volume_spike_trend": "volume_spike",
                                                             "breakout_52w_volume": "breakout_52w",
                                                             "rsi_oversold_fast": "rsi_oversold"}))
    # the page must open offline: nothing fetched from anywhere, no script at all
    assert "<script" not in text and not re.search(r"\s(src|href)=", text)


def test_report_loads_in_headless_chromium_and_shows_every_detector(report, tmp_path):
    assert shutil.which(CHROMIUM), "Chromium is missing: `make test` installs Debian's chromium package"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            text = page.inner_text("body")
            drawn = page.evaluate("() => [...document.querySelectorAll('svg')].filter("
                                  "s => s.getBoundingClientRect().width > 300 && s.querySelector('polyline, rect')).length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert drawn == 30  # 6 families x 5 charts, each with something drawn in it
    for name in DETECTORS:
        assert name in text, f"{name} missing from the report"
    assert "abnormal return around the event (95% band)" in text and "distribution of fwd_20" in text
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a blank page would be a few KB
