"""report.html: pure parts, and the real page in headless Chromium (no console errors, every detector)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import run_cli, write_config
from harness.report import families
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


def test_report_is_self_contained(report):
    text = report.read_text()
    assert "<script" in text and "Bokeh" in text
    # the page must open offline: no script or stylesheet fetched from anywhere
    assert not re.search(r"<script[^>]*\ssrc=", text) and not re.search(r"<link[^>]*\shref=", text)


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
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length === 1", timeout=30_000)
            page.wait_for_timeout(1000)
            labels = page.evaluate("""() => [...Bokeh.documents[0].all_models].flatMap(m =>
                [typeof m.text === 'string' ? m.text : null, m.label && m.label.value ? m.label.value : null]
            ).filter(Boolean)""")
            rendered = page.evaluate("() => Object.keys(Bokeh.index).length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert rendered >= 1
    for name in DETECTORS:
        assert name in labels, f"{name} missing from the report"
    assert "mean forward return (95% CI)" in labels and "distribution of fwd_20" in labels
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a blank page would be a few KB
