"""report.html: pure parts, the page rebuilt from a real run's files, and the real page in headless
Chromium (no console errors, every detector, every number as summary.csv, quantiles.csv and run.json
say it)."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats

from conftest import DETECTORS, run_cli, write_config, write_partition
from harness.report import (build_report, centred_span, families, nice_ticks, partial_years, point_labels, sweeps,
                            verdict)

CHROMIUM = "/usr/bin/chromium"
CHARTS = 7  # per family
VARIANTS = {"volume_spike_trend": "volume_spike", "breakout_52w_volume": "breakout_52w",
            "rsi_oversold_fast": "rsi_oversold"}


def test_families_put_each_variant_beside_its_baseline():
    baselines = {"a": None, "a_fast": "a", "b": None, "c_var": "c", "a_slow": "a"}
    assert families(["a_fast", "b", "a", "c_var", "a_slow"], baselines) == [["a", "a_fast", "a_slow"], ["b"], ["c_var"]]


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-0.031, 0.012) == [-0.03, -0.02, -0.01, 0.0, 0.01]
    assert nice_ticks(2021, 2025) == [2021, 2022, 2023, 2024, 2025]


def test_the_hit_rate_axis_is_centred_on_the_null_and_spans_every_hit_rate():
    # hit rates of ~49% against a null of 49.5%: the axis shows the difference, not 0-50%
    assert centred_span(0.495, [0.49, 0.493], [0.495], minimum=0.02) == pytest.approx((0.475, 0.515))
    assert centred_span(0.5, [0.44, 0.53, np.nan], minimum=0.02) == pytest.approx((0.44, 0.56))
    assert centred_span(np.nan, [0.44, 0.53], minimum=0.02) == (0.44, 0.53)  # no null: the values' own span


def test_partial_years_are_those_the_data_does_not_cover_from_its_first_week_to_its_last():
    assert partial_years("2023-01-03", "2025-12-31") == set()
    assert partial_years("2023-01-02", "2025-09-30") == {2025}
    assert partial_years("2013-03-01", "2018-12-28") == {2013}
    assert partial_years("2024-02-01", "2024-06-30") == {2024}
    assert partial_years(None, None) == set()


def test_a_variant_is_better_or_worse_only_where_starred():
    assert verdict(0.01, tested=True, significant=True) == "better*"
    assert verdict(-0.01, tested=True, significant=True) == "worse*"
    assert verdict(0.05, tested=True, significant=False) == "no difference shown"
    assert verdict(np.nan, tested=False, significant=False) == "no test"
    assert verdict(0.05, tested=True, significant=True, looks_ahead=True) == "looks ahead: not judged"


@pytest.fixture(scope="module")
def run_out(tmp_path_factory, small_universe) -> Path:
    """A run over the small universe plus what a real dataset holds: SPLIT, one of its symbols with an
    unadjusted 2:1 split (a flagged bar) and two bad prints (a repair), and EMPTY, a symbol whose only
    file is not *.parquet (no bars); end_date cuts the last year short (a partial year)."""
    tmp = tmp_path_factory.mktemp("report")
    data = tmp / "ohlcv"
    shutil.copytree(small_universe, data)
    source = pd.read_parquet(next(iter(sorted(data.glob("symbol=*/*.parquet")))))
    split = source.copy()
    split.loc[400:, ["open", "high", "low", "close"]] /= 2
    split.loc[[100, 101], "close"] = np.nan
    write_partition(data, "SPLIT", split)
    write_partition(data, "EMPTY", source.iloc[:10], "part-0.pq")
    config = write_config(tmp / "c.yaml", ohlcv_path=str(data), detectors=DETECTORS, out_dir=str(tmp / "out"),
                          workers=1, end_date="2025-09-30")
    proc = run_cli("--config", str(config))
    assert proc.returncode == 0, proc.stderr
    return tmp / "out"


@pytest.fixture(scope="module")
def report(run_out) -> Path:
    return run_out / "report.html"


class Tables(HTMLParser):
    """The text of every table's cells, by the table's class: {class: [[cell, ...], ...]}."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: list[list[str]] | None = None
        self.cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.current = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr" and self.current is not None:
            self.current.append([])
        elif tag in ("td", "th") and self.current is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.current[-1].append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def read_run(out: Path) -> tuple[pd.DataFrame, dict, pd.DataFrame, dict, dict]:
    """(summary, forward frames, paths, run.json, quantiles) as the run wrote them."""
    summary = pd.read_csv(out / "summary.csv")
    summary[["baseline", "note"]] = summary[["baseline", "note"]].astype(object).fillna("")
    forward = {d: pq.read_table(out / d / "forward.parquet").to_pandas() for d in summary["detector"].unique()}
    quantiles = pd.read_csv(out / "quantiles.csv", dtype={"quantile": str})
    return (summary, forward, pd.read_csv(out / "paths.csv"), json.loads((out / "run.json").read_text()),
            {d: q for d, q in quantiles.groupby("detector", sort=False)})


def p_cell(p: float) -> str:
    return "-" if pd.isna(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def interval_cell(cell: str) -> tuple[float, float]:
    low, high = re.fullmatch(r"\[([-+0-9.]+)%, ([-+0-9.]+)%\]", cell).groups()
    return float(low) / 100, float(high) / 100


def test_report_is_self_contained(report):
    text = report.read_text()
    count = len(families(DETECTORS, VARIANTS))
    assert text.count("<svg") == CHARTS * count
    # the page must open offline: nothing fetched from anywhere, no script at all
    assert "<script" not in text and not re.search(r"\s(src|href)=", text)
    # 2025 ends on 30 September: each family's events-per-year chart marks it
    assert text.count(">partial</text>") == count


def test_findings_come_first_and_say_the_variants_difference_with_its_interval_and_p(run_out):
    """Every comparison of a variant with its baseline: the interval from t(df), the df counted
    here from the forward files (the p of that t with that df is summary.csv's vs_baseline_p), the
    raw and Holm p, and the verdict."""
    summary, forward, *_ = read_run(run_out)
    text = (run_out / "report.html").read_text()
    assert text.index("<h2>Findings</h2>") < text.index("<h2>Data quality</h2>") < text.index("<h2>volume_spike vs")
    rows = Tables(text).tables["findings"]
    assert rows[0] == ["variant", "bars", "verdict", "difference", "95% interval", "p", "p (Holm)"]
    compared = summary[summary["baseline"] != ""]
    assert len(rows) - 1 == len(compared) == 12
    shown = {(r[0], int(r[1])): r for r in rows[1:]}
    for row in compared.itertuples():
        cells = shown[(f"{row.detector} vs {row.baseline}", row.window)]
        both = pd.concat([forward[d].loc[forward[d][f"abn_{row.window}"].notna(), ["date", "symbol"]]
                          for d in (row.baseline, row.detector)])
        df = min(both["date"].nunique(), both["symbol"].nunique()) - 1
        assert row.vs_baseline_df == df
        assert 2 * stats.t.sf(abs(row.vs_baseline_t), df) == pytest.approx(row.vs_baseline_p, rel=1e-9)
        half = stats.t.ppf(0.975, df) * row.vs_baseline_se
        low, high = interval_cell(cells[4])
        assert low == pytest.approx(row.vs_baseline - half, abs=6e-5) and high == pytest.approx(row.vs_baseline + half,
                                                                                              abs=6e-5)
        assert cells[3] == f"{100 * row.vs_baseline:+.2f}%"
        assert cells[5] == p_cell(row.vs_baseline_p) and cells[6] == p_cell(row.vs_p_holm)
        word = ("better*" if row.vs_baseline > 0 else "worse*") if row.vs_significant else "no difference shown"
        assert cells[2] == word
    for variant, baseline in VARIANTS.items():
        starred = compared[(compared["detector"] == variant) & compared["vs_significant"]]
        if starred.empty:
            assert f"<li><b>{variant}</b> shows no difference from {baseline} at any horizon</li>" in text


def test_a_run_without_variants_lists_each_detectors_starred_horizons(run_out):
    summary, forward, paths, info, quantiles = read_run(run_out)
    alone = summary[summary["baseline"] == ""].reset_index(drop=True)
    text = build_report(alone, forward, paths, info, quantiles)
    rows = Tables(text).tables["findings"]
    assert rows[0] == ["detector", "starred horizons"] and len(rows) - 1 == alone["detector"].nunique()
    expected = {d: "; ".join(f"{r.window} bars: {100 * r.abn_mean:+.2f}%, p (Holm) {p_cell(r.abn_p_holm)}"
                             for r in mine[mine["abn_significant"]].itertuples()) or "none"
                for d, mine in alone.groupby("detector")}
    assert {r[0]: r[1] for r in rows[1:]} == expected
    # and with a starred horizon (its Holm p as such a run would have it)
    starred = alone.copy()
    at = starred["detector"].eq("gap") & starred["window"].eq(5)
    starred.loc[at, ["abn_significant", "abn_p_holm"]] = [True, 0.012]
    rows = Tables(build_report(starred, forward, paths, info, quantiles)).tables["findings"]
    gap = alone[(alone["detector"] == "gap") & (alone["window"] == 5)].iloc[0]
    assert dict(r for r in rows[1:])["gap"] == f"5 bars: {100 * gap.abn_mean:+.2f}%, p (Holm) 0.012"


def test_data_quality_shows_flagged_bars_repairs_thin_market_and_symbols_without_bars(run_out):
    summary, forward, paths, info, quantiles = read_run(run_out)
    text = (run_out / "report.html").read_text()
    outliers = info["market_outliers"]
    assert outliers["count"] == 1 and outliers["bars"][0]["symbol"] == "SPLIT"
    bars = Tables(text).tables["outliers"]
    assert bars == [["symbol", "date", "bar return"]] + [[b["symbol"], b["date"], f"{100 * b['return']:+.2f}%"]
                                                         for b in outliers["bars"]]
    assert info["repairs"]["SPLIT"] == {"bad_price_rows": 2}
    assert "bad_price_rows <b>2</b> in 1 symbol(s) (SPLIT)" in text
    assert "Symbols without bars: 1 (EMPTY)." in text
    market = info["market"]
    assert market["thin_dates"] > 0 and f"<b>{market['thin_dates']:,}</b> of its {market['dates'] - 1:,} dates" in text
    assert "are <b>in the statistics</b> (exclude_flagged: false" in text
    if "flagged" in summary.columns:  # each detector's events whose window crosses a flagged bar
        rows = Tables(text).tables["flagged"]
        windows = sorted(summary["window"].unique())
        assert rows[0] == ["detector", *(f"{w} bars" for w in windows)]
        assert {r[0]: r[1:] for r in rows[1:]} == {d: [f"{n:,}" for n in mine.sort_values("window")["flagged"]]
                                                   for d, mine in summary.groupby("detector")}


def test_the_flagged_counts_and_their_exclusion_are_shown_as_the_run_says(run_out):
    summary, forward, paths, info, quantiles = read_run(run_out)
    counts = summary.assign(flagged=np.arange(len(summary)) % 3)
    excluded = {**info, "config": {**info["config"], "exclude_flagged": True}}
    text = build_report(counts, forward, paths, excluded, quantiles)
    rows = Tables(text).tables["flagged"]
    gap = counts[counts["detector"] == "gap"].sort_values("window")
    assert dict((r[0], r[1:]) for r in rows[1:])["gap"] == [str(n) for n in gap["flagged"]]
    assert "are <b>left out of the statistics</b> (exclude_flagged: true)" in text
    unknown = {**info, "config": {k: v for k, v in info["config"].items() if k != "exclude_flagged"}}
    assert "are <b>in the statistics</b> (exclude_flagged: false" in build_report(summary, forward, paths, unknown,
                                                                                   quantiles)
    assert "flagged" not in Tables(build_report(summary.drop(columns="flagged", errors="ignore"), forward, paths,
                                                info, quantiles)).tables


def test_report_loads_in_headless_chromium_and_shows_every_detector(report, tmp_path):
    """At 1400 px and on a phone-sized viewport: no console error, every chart drawn, every detector
    named; the numbers tables say what summary.csv says, the quintile chart what quantiles.csv does."""
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
        assert seen[name]["drawn"] == CHARTS * 6  # 6 families x 7 charts, each with something drawn in it
        assert seen[name]["overflow"] <= max(width, 340), (name, seen[name]["overflow"])  # a chart is 330 px
        for detector in DETECTORS:
            assert detector in seen[name]["text"], f"{detector} missing from the report"
        assert (tmp_path / f"report-{name}.png").stat().st_size > 50_000  # a blank page would be a few KB
    text = seen["wide"]["text"]
    for title in ("cumulative abnormal return after the event", "distribution of 20-bar abnormal returns",
                  "hit rate vs chance (sign test, 95%)", "abnormal return by score quintile (20 bars)",
                  "before the event: bar k's price vs the event's", "above 0: prices fell into the event"):
        assert title in text
    assert "per test (unadjusted)" in text and "booleans abn_significant and vs_significant" in text
    assert "a star in summary.csv" not in text
    summary, _, _, _, quantiles = read_run(report.parent)
    # the 5-1 spread of each detector's score quintiles at 20 bars, under its chart
    for detector, q in quantiles.items():
        spread = q[(q["window"] == 20) & (q["quantile"] == "5-1")].iloc[0]
        said = "no test" if pd.isna(spread.abn_t) else f"t {spread.abn_t:.2f}, p {p_cell(spread.abn_p)}"
        assert f"{detector} 5-1: {100 * spread.abn_mean:+.2f}%, {said}" in text
    # the numbers: every row of summary.csv, as it says them (stars where abn_significant is)
    rows = [r for r in seen["wide"]["rows"] if r[0] != "detector"]
    assert seen["wide"]["rows"][0] == ["detector", "bars", "events", "abnormal mean", "95% interval", "t", "p",
                                       "p (Holm)", "vs baseline", "vs t", "vs p", "vs p (Holm)", "note"]
    assert len(rows) == len(summary)
    shown = {(r[0], int(r[1])): r for r in rows}
    assert (summary["events"] > summary["abn_valid"]).any()  # the two counts differ somewhere
    for row in summary.itertuples():
        cells = shown[(row.detector, row.window)]
        events = f"{row.events:,}" + ("" if row.events == row.abn_valid else f" ({row.abn_valid:,} with abn)")
        assert cells[2] == events and cells[3] == f"{100 * row.abn_mean:+.2f}%"
        if pd.isna(row.abn_se):
            assert cells[4] == ""
        else:
            half = stats.t.ppf(0.975, row.abn_df) * row.abn_se
            low, high = interval_cell(cells[4])
            assert low == pytest.approx(row.abn_mean - half, abs=6e-5) and high == pytest.approx(row.abn_mean + half,
                                                                                              abs=6e-5)
        t = "-" if pd.isna(row.abn_t) else f"{row.abn_t:.2f}" + ("*" if row.abn_significant else "")
        assert cells[5] == t and cells[6] == p_cell(row.abn_p) and cells[7] == p_cell(row.abn_p_holm)
        if row.baseline and not pd.isna(row.vs_baseline):
            vs = "-" if pd.isna(row.vs_baseline_t) else f"{row.vs_baseline_t:.2f}" + ("*" if row.vs_significant else "")
            assert cells[9] == vs and cells[8] == f"{100 * row.vs_baseline:+.2f}%"
            assert cells[10] == p_cell(row.vs_baseline_p) and cells[11] == p_cell(row.vs_p_holm)
        assert cells[12] == row.note


def test_sweeps_are_a_config_entrys_grid_points():
    names = ["gap", "vs[multiple=2.0]", "vs[multiple=3.0]", "one[x=1]", "vs_m5", "g[a=1,b=2]", "g[a=1,b=3]"]
    assert sweeps(names) == {"vs": ["vs[multiple=2.0]", "vs[multiple=3.0]"], "g": ["g[a=1,b=2]", "g[a=1,b=3]"]}


def test_grid_points_are_labelled_by_their_values_under_their_keys():
    assert point_labels(["g[a=1,b=2]", "g[a=1,b=3]"]) == (["1/2", "1/3"], "a/b")
    assert point_labels(["g[a=1]", "g[b=3]"]) == (["a=1", "b=3"], "grid point")


def test_a_grid_is_drawn_as_one_sweep_chart_with_its_baselines_line(tmp_path, small_universe):
    config = write_config(tmp_path / "c.yaml", ohlcv_path=str(small_universe), out_dir=str(tmp_path / "out"),
                          workers=1, forward_windows=[5, 20],
                          detectors=["volume_spike", {"name": "vs", "detector": "volume_spike",
                                                      "grid": {"multiple": [2.0, 3.0, 4.0]},
                                                      "baseline": "volume_spike"}])
    proc = run_cli("--config", str(config))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    charts = re.findall(r"<svg.*?</svg>", page, re.S)
    sweep = [c for c in charts if "sweep vs: abnormal mean" in c]
    assert len(sweep) == 1
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    drawn = summary[summary["detector"].str.startswith("vs[") & summary["abn_mean"].notna()]
    assert sweep[0].count("<circle") == len(drawn) == 6, "a dot per grid point and horizon"
    assert sweep[0].count('stroke-dasharray="4,3"') == 2, "the baseline's mean at each horizon"
    for label in ("2.0", "3.0", "4.0", "multiple"):
        assert f">{label}</text>" in sweep[0]
    assert "3 points: 3 tests per horizon" in sweep[0] and "a sweep of 20 points is 20 more tests" in page
