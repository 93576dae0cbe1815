"""report.html: a self-contained page (inline SVG, no script: it opens offline) comparing baselines and variants.

Draws only; the numbers come from harness.stats.summary. From the top: the run's facts and how to read
its numbers; the findings (per variant: does it beat its baseline, at which horizons, with the interval
and p of the difference; in a run without variants, each detector's starred horizons); the data's
quality (flagged outlier bars, repairs, the thin market, symbols without bars, events whose window
crosses a flagged bar); then per family (a baseline with its variants, on the same charts) its numbers
and a row of charts: the abnormal return after the event with its 95% band and, on its own scale,
before it; the mean abnormal return by window with its 95% interval; the abnormal hit rate against
chance (the sign test); the mean abnormal return by score quintile; events per year (a year the data
covers only in part marked); the distribution of the 20-bar abnormal return. Then the parameter
sweeps (a config entry's grid: the abnormal mean at each point, per horizon, against the baseline's).
Last, each detector's share of CPU time. The charts are plain SVG written here (a few primitives), which builds in
milliseconds; a plotting library cost seconds per report.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.stats.benchmark import DEFAULT_OUTLIER_MOVE
from harness.eval import abnormal_column
from harness.io import repair_totals  # the terminal's totals
from harness.stats.summary import LOOKS_AHEAD, SPREAD, events_per_year, histogram, intervals

WIDTH, HEIGHT = 330, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 28, 34  # margins around the plotting area
NOTE_HEIGHT = 13  # a line of text under a chart
CHART_WINDOW = 20  # the horizon of the distribution and quintile charts (the longest when a run has no 20)
LISTED_OUTLIERS = 20  # flagged bars listed in the report (run.json has up to 1,000)
HIT_RATE_HALF_RANGE = 0.02  # the hit-rate axis spans at least the null -+ this
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")


def families(detectors: Sequence[str], baselines: Mapping[str, str | None]) -> list[list[str]]:
    """Detectors grouped as [baseline, its variants...], in the order the first member appears.

    A variant whose baseline did not run forms its own group.
    """
    groups: dict[str, list[str]] = {}
    for name in detectors:
        root = baselines.get(name) if baselines.get(name) in detectors else name
        groups.setdefault(root, []).append(name)
    for root, members in groups.items():
        members.sort(key=lambda m: m != root)
    return list(groups.values())


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(high / step + 1e-9) + 1)]


def centred_span(centre: float, *arrays: Iterable[float], minimum: float) -> tuple[float, float]:
    """(centre - d, centre + d), d the largest distance of a finite value from `centre`, at least
    `minimum`: an axis around a reference (the hit rate's null) that shows every difference from
    it. centre NaN: the values' own span."""
    values = np.concatenate([np.asarray(list(a), dtype="float64") for a in arrays] + [np.zeros(0)])
    values = values[np.isfinite(values)]
    if not math.isfinite(centre):
        return _span(values, include_zero=False)
    half = max(float(np.abs(values - centre).max()) if len(values) else 0.0, minimum)
    return centre - half, centre + half


def partial_years(first_date: str | None, last_date: str | None) -> set[int]:
    """The calendar years the data covers only in part: the first year when the data starts after
    its first week (January 7), the last when it ends before its last week (December 24); a year's
    first and last trading days fall inside those weeks. Either date unknown: none."""
    if not first_date or not last_date:
        return set()
    first, last = pd.Timestamp(first_date), pd.Timestamp(last_date)
    return ({first.year} if (first.month, first.day) > (1, 7) else set()) | \
        ({last.year} if (last.month, last.day) < (12, 24) else set())


def chart_window(windows: Sequence[int]) -> int:
    """The horizon of the single-horizon charts: CHART_WINDOW when the run has it, else its longest."""
    return CHART_WINDOW if CHART_WINDOW in windows or not len(windows) else int(max(windows))


class Chart:
    """One SVG chart: linear axes over the data ranges given, with ticks, a title and a legend."""

    def __init__(self, title: str, x_range: tuple[float, float], y_range: tuple[float, float],
                 y_format: str = "{:.1%}", x_labels: Sequence[tuple[float, str]] | None = None,
                 x_format: str = "{:g}", x_title: str = "", y_title: str = ""):
        self.title, self.parts = title, []
        self.x_title, self.y_title = x_title, y_title
        pad = (y_range[1] - y_range[0]) * 0.05 or 0.01
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range[0] - pad, y_range[1] + pad
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 1, self.x1 + 1
        self.y_format, self.x_format, self.x_labels = y_format, x_format, x_labels

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)

    def line(self, xs: Iterable[float], ys: Iterable[float], color: str, width: float = 2, dash: str = "",
             opacity: float = 1.0) -> None:
        """A polyline through the finite points (a gap where a value is NaN)."""
        runs, run = [], []
        for a, b in zip(xs, ys):
            if math.isfinite(a) and math.isfinite(b):
                run.append(f"{self.x(a):.1f},{self.y(b):.1f}")
            elif run:
                runs.append(run)
                run = []
        runs.append(run)
        style = f' stroke-dasharray="{dash}"' if dash else ""
        style += f' stroke-opacity="{opacity}"' if opacity < 1 else ""
        self.parts += [f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" stroke-width="{width}"{style}/>'
                       for r in runs if r]

    def band(self, xs: Sequence[float], low: Sequence[float], high: Sequence[float], color: str) -> None:
        points = [(a, lo, hi) for a, lo, hi in zip(xs, low, high) if math.isfinite(lo) and math.isfinite(hi)]
        if points:
            path = [f"{self.x(a):.1f},{self.y(hi):.1f}" for a, _, hi in points]
            path += [f"{self.x(a):.1f},{self.y(lo):.1f}" for a, lo, _ in reversed(points)]
            self.parts.append(f'<polygon points="{" ".join(path)}" fill="{color}" fill-opacity="0.15" stroke="none"/>')

    def bar(self, left: float, right: float, value: float, color: str, opacity: float = 1.0, base: float = 0.0,
            tip: str = "") -> None:
        """A bar from `base` (clamped into the axis) to `value`; tip: its tooltip."""
        if math.isfinite(value):
            top, bottom = sorted((self.y(value), self.y(max(self.y0, min(base, self.y1)))))
            title = f"<title>{html.escape(tip)}</title>" if tip else ""
            self.parts.append(f'<rect x="{self.x(left):.1f}" y="{top:.1f}" width="{self.x(right) - self.x(left):.1f}" '
                              f'height="{max(bottom - top, 0.5):.1f}" fill="{color}" fill-opacity="{opacity}">'
                              f'{title}</rect>')

    def whisker(self, at: float, low: float, high: float) -> None:
        """An interval; an end beyond the axis is cut at its edge and has no cap (it goes on)."""
        if math.isfinite(low) and math.isfinite(high):
            x = self.x(at)
            bottom, top = self.y(max(low, self.y0)), self.y(min(high, self.y1))
            caps = "".join(f"M{x - 3:.1f},{y:.1f}h6" for y, inside in ((bottom, low >= self.y0), (top, high <= self.y1))
                           if inside)
            self.parts.append(f'<path d="M{x:.1f},{bottom:.1f}V{top:.1f}{caps}" stroke="#333" fill="none"/>')

    def dot(self, at: float, value: float, color: str, opacity: float = 1.0) -> None:
        if math.isfinite(value):
            self.parts.append(f'<circle cx="{self.x(at):.1f}" cy="{self.y(value):.1f}" r="2.5" fill="{color}" '
                              f'fill-opacity="{opacity}"/>')

    def text(self, x: float, y: float, text: str, anchor: str = "start", color: str = "#555") -> None:
        """Text at pixel (x, y) of the chart."""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}">'
                          f'{html.escape(text)}</text>')

    def svg(self, notes: Sequence[tuple[str, str]] = ()) -> str:
        """The chart; notes: (text, colour) lines under it."""
        axes = []
        for tick in nice_ticks(self.y0, self.y1):
            y = self.y(tick)
            axes.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                        f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{self.y_format.format(tick)}</text>')
        if self.y0 < 0 < self.y1:
            zero = self.y(0)
            axes.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#999"/>')
        labels = self.x_labels if self.x_labels is not None else [
            (t, self.x_format.format(t)) for t in nice_ticks(self.x0, self.x1)]
        for at, label in labels:
            axes.append(f'<text x="{self.x(at):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">'
                        f'{html.escape(label)}</text>')
        if self.x_title:
            axes.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle" '
                        f'fill="#555">{html.escape(self.x_title)}</text>')
        if self.y_title:
            axes.append(f'<text transform="translate(10,{(TOP + HEIGHT - BOTTOM) / 2:.0f}) rotate(-90)" '
                        f'text-anchor="middle" fill="#555">{html.escape(self.y_title)}</text>')
        for n, (note, color) in enumerate(notes):
            axes.append(f'<text x="4" y="{HEIGHT + NOTE_HEIGHT * n + 8}" fill="{color}">{html.escape(note)}</text>')
        height = HEIGHT + NOTE_HEIGHT * len(notes)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-size="10" '
                f'font-family="sans-serif"><text x="{WIDTH / 2}" y="14" text-anchor="middle" font-size="12" '
                f'font-weight="bold">{html.escape(self.title)}</text>'
                f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
                f'fill="none" stroke="#ccc"/>{"".join(axes)}{"".join(self.parts)}</svg>')


def _span(*arrays: Iterable[float], include_zero: bool = True) -> tuple[float, float]:
    values = np.concatenate([np.asarray(list(a), dtype="float64") for a in arrays] + [np.zeros(int(include_zero))])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)


def pct(value: float) -> str:
    """A return as the report prints it: +1.23%; '' for NaN."""
    return f"{100 * value:+.2f}%" if math.isfinite(value) else ""


def p_text(p: float) -> str:
    """A p-value as the report prints it: 0.042, '<0.001', '-' without a test."""
    return "-" if not math.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def t_text(t: float) -> str:
    """A t as the report prints it: 2.05, '-' without a test."""
    return f"{t:.2f}" if math.isfinite(t) else "-"


def events_text(events: int, with_abnormal: int) -> str:
    """The events of a row, and those with an abnormal return where fewer: '6,201 (5,704 with abn)'."""
    return f"{events:,}" if events == with_abnormal else f"{events:,} ({with_abnormal:,} with abn)"


def _path_chart(paths: pd.DataFrame, members: list[str], colors: dict[str, str], after: bool) -> str:
    """The cumulative abnormal return from the event bar (0 there) with its 95% band, after the event
    (offsets >= 0: the drift a researcher looks for) or before it (<= 0: the run-up the detector
    followed), each on its own scale so that one does not flatten the other. Before the event the
    value is paths.csv's, close[i+k] / close[i] - 1 less the benchmark's: above 0 the price was higher
    k bars before, so prices fell into the event; the chart says so in words."""
    rows = {name: paths[(paths["detector"] == name) & ((paths["offset"] >= 0) if after else (paths["offset"] <= 0))]
            for name in members}
    title = ("cumulative abnormal return after the event" if after
             else "before the event: bar k's price vs the event's")
    chart = Chart(title, _span(*(r["offset"] for r in rows.values())),
                  _span(*(r["abn_low"] for r in rows.values()), *(r["abn_high"] for r in rows.values()),
                        *(r["mean_abn"] for r in rows.values())), x_title="bars from the event",
                  y_title="abnormal return" if after else "abnormal close[k] / close[0] - 1")
    for name, r in rows.items():
        chart.band(r["offset"].tolist(), r["abn_low"].tolist(), r["abn_high"].tolist(), colors[name])
        chart.line(r["offset"], r["mean_abn"], colors[name])
    if not after:
        chart.text(LEFT + 4, TOP + 11, "above 0: prices fell into the event")
        chart.text(LEFT + 4, HEIGHT - BOTTOM - 5, "below 0: prices rose into the event")
    return chart.svg()


def _window_chart(summary: pd.DataFrame, members: list[str], colors: dict[str, str]) -> str:
    """The mean abnormal return by horizon with its 95% (per test) interval."""
    rows = summary[summary["detector"].isin(members)]
    windows = sorted(rows["window"].unique())
    low, high = intervals(rows["abn_mean"], rows["abn_se"], rows["abn_df"])
    chart = Chart("mean abnormal return (95% CI)", (0, len(windows)), _span(rows["abn_mean"], low, high),
                  x_labels=[(i + 0.5, f"{w} bars") for i, w in enumerate(windows)], x_title="horizon")
    width = 0.8 / max(len(members), 1)
    for row, lo, hi in zip(rows.to_dict("records"), low, high):
        left = windows.index(row["window"]) + 0.1 + members.index(row["detector"]) * width
        chart.bar(left, left + width, row["abn_mean"], colors[row["detector"]],
                  tip=f"{row['detector']}, {row['window']} bars: {pct(row['abn_mean'])}, t {t_text(row['abn_t'])}, "
                      f"p {p_text(row['abn_p'])}, p (Holm) {p_text(row['abn_p_holm'])}")
        chart.whisker(left + width / 2, lo, hi)
    return chart.svg()


def sign_intervals(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The 95% intervals of the abnormal hit rates that the sign test implies: the test is the t of
    the mean of 1[abn > 0] - null_hit_rate (its value abn_hit_rate - null_hit_rate) over the abnormal
    mean's events and clusters, so its standard error is that value / sign_t and its df abn_df. An
    interval leaves out the null exactly where sign_p < 5%. NaN without a sign t (or abn t), or with
    sign_t 0."""
    gap = rows["abn_hit_rate"].to_numpy(dtype="float64") - rows["null_hit_rate"].to_numpy(dtype="float64")
    t, df = rows["sign_t"].to_numpy(dtype="float64"), rows["abn_df"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(np.isfinite(t) & (t != 0) & (df > 0), np.abs(gap / t), np.nan)
    return intervals(rows["abn_hit_rate"], pd.Series(se), rows["abn_df"])


def _sign_chart(summary: pd.DataFrame, members: list[str], colors: dict[str, str]) -> str:
    """The abnormal hit rate by horizon as a bar from the share expected by chance (null_hit_rate,
    dashed), with the sign test's 95% interval, on an axis centred on the null that spans the hit
    rates (an interval wider than that runs off it: it still shows whether the null is inside)."""
    rows = summary[summary["detector"].isin(members)]
    windows = sorted(rows["window"].unique())
    low, high = sign_intervals(rows)
    nulls = rows["null_hit_rate"].to_numpy(dtype="float64")
    centre = float(np.nanmean(nulls)) if np.isfinite(nulls).any() else math.nan
    chart = Chart("hit rate vs chance (sign test, 95%)", (0, len(windows)),
                  centred_span(centre, rows["abn_hit_rate"], nulls, minimum=HIT_RATE_HALF_RANGE),
                  x_labels=[(i + 0.5, f"{w} bars") for i, w in enumerate(windows)], x_title="horizon",
                  y_title="share of abnormal returns > 0")
    width = 0.8 / max(len(members), 1)
    for row, lo, hi in zip(rows.to_dict("records"), low, high):
        left = windows.index(row["window"]) + 0.1 + members.index(row["detector"]) * width
        null = row["null_hit_rate"]
        chart.bar(left, left + width, row["abn_hit_rate"], colors[row["detector"]],
                  base=null if math.isfinite(null) else 0.0,
                  tip=f"{row['detector']}, {row['window']} bars: hit rate {row['abn_hit_rate']:.1%}, by chance "
                      f"{null:.1%}, sign t {t_text(row['sign_t'])}, p {p_text(row['sign_p'])}")
        chart.whisker(left + width / 2, lo, hi)
        if math.isfinite(null):  # the share expected by chance
            chart.line([left, left + width], [null] * 2, "#000", width=1.5, dash="2,2")
    return chart.svg(notes=[("bars start at the share by chance (dashed); no test: no interval", "#555")])


def _quintile_chart(quantiles: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str],
                    window: int) -> str:
    """The mean abnormal return by score quintile at one horizon, and under it each detector's
    top-minus-bottom spread with its t and p (quantiles.csv)."""
    rows = {name: quantiles[name][quantiles[name]["window"] == window] for name in members if name in quantiles}
    by_quintile = {name: r[r["quantile"].astype(str) != SPREAD] for name, r in rows.items()}
    chart = Chart(f"abnormal return by score quintile ({window} bars)", (0, 5),
                  _span(*(r["abn_mean"] for r in by_quintile.values())),
                  x_labels=[(q - 0.5, f"{q}") for q in range(1, 6)],
                  x_title="score quintile (1: lowest scores)")
    width = 0.8 / max(len(members), 1)
    notes = []
    for name, r in by_quintile.items():
        for row in r.to_dict("records"):
            left = int(row["quantile"]) - 1 + 0.1 + members.index(name) * width
            chart.bar(left, left + width, row["abn_mean"], colors[name],
                      tip=f"{name}, quintile {row['quantile']}: {pct(row['abn_mean'])} over {row['events']} events")
        spread = rows[name][rows[name]["quantile"].astype(str) == SPREAD]
        if len(spread):
            s = spread.iloc[0]
            notes.append((f"{name} 5-1: {pct(s['abn_mean']) or '-'}, " + (
                f"t {s['abn_t']:.2f}, p {p_text(s['abn_p'])}" if math.isfinite(s["abn_t"]) else "no test"),
                colors[name]))
    return chart.svg(notes=notes)


def sweeps(detectors: Sequence[str]) -> dict[str, list[str]]:
    """The run's parameter sweeps: a config entry's grid points, named `<name>[key=value,...]`
    (harness.config), grouped by `<name>` in run order; a name with a single point is no sweep."""
    found: dict[str, list[str]] = {}
    for name in detectors:
        if name.endswith("]") and "[" in name:
            found.setdefault(name[:name.index("[")], []).append(name)
    return {root: points for root, points in found.items() if len(points) > 1}


def point_labels(points: Sequence[str]) -> tuple[list[str], str]:
    """(short labels, axis title) of grid points `name[k=v,...]`: the values, "/" between them,
    under the title of their keys ("multiple/window"); points whose keys differ keep k=v."""
    pairs = [[item.partition("=") for item in p[p.index("[") + 1:-1].split(",")] for p in points]
    keys = [[k for k, _, _ in point] for point in pairs]
    if all(k == keys[0] for k in keys):
        return ["/".join(v for _, _, v in point) for point in pairs], "/".join(keys[0])
    return [p[p.index("[") + 1:-1] for p in points], "grid point"


def _sweep_chart(summary: pd.DataFrame, root: str, points: list[str]) -> str:
    """A sweep on one chart: per horizon (a colour each) the abnormal mean at each grid point with
    its 95% (per test) interval (joined by a line when the grid has one key), and the points'
    baseline's abnormal mean as a dashed line."""
    rows = summary[summary["detector"].isin(points)]
    windows = sorted(rows["window"].unique())
    low, high = intervals(rows["abn_mean"], rows["abn_se"], rows["abn_df"])
    labels, title = point_labels(points)
    bases = {b for b in rows["baseline"] if b}
    base_rows = summary[summary["detector"].isin(bases)]
    chart = Chart(f"sweep {root}: abnormal mean (95% CI)", (-0.5, len(points) - 0.5),
                  _span(rows["abn_mean"], low, high, base_rows["abn_mean"]),
                  x_labels=[(i, label) for i, label in enumerate(labels)], x_title=title)
    step = 0.6 / max(len(windows), 1)
    notes = []
    for k, h in enumerate(windows):
        color = COLORS[k % len(COLORS)]
        mine = rows["window"].to_numpy() == h
        at = [points.index(d) - 0.3 + step * (k + 0.5) for d in rows["detector"][mine]]
        if "/" not in title:  # one key: the points are in its order; of several, a line would join unrelated ones
            chart.line(at, rows["abn_mean"][mine], color, width=1.5)
        for x, value, lo, hi in zip(at, rows["abn_mean"][mine], low[mine], high[mine]):
            chart.dot(x, value, color)
            chart.whisker(x, lo, hi)
        for base in sorted(bases):
            value = base_rows[(base_rows["detector"] == base) & (base_rows["window"] == h)]["abn_mean"]
            if len(value):
                chart.line([-0.5, len(points) - 0.5], [float(value.iloc[0])] * 2, color, width=1, dash="4,3")
        notes.append((f"{h} bars" + (f" (dashed: {', '.join(sorted(bases))})" if bases else ""), color))
    notes.append((f"{len(points)} points: {len(points)} tests per horizon in the Holm and BH families", "#555"))
    return chart.svg(notes=notes)


def _per_year_chart(forward: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str],
                    partial: set[int]) -> str:
    """Events per calendar year; a year the data covers only in part (partial_years()) lighter, its
    line dashed and labelled 'partial', so that its drop is not read as the detector's."""
    counts = {name: events_per_year(forward[name]["date"]) for name in members}
    years = _span(*(c.index for c in counts.values() if len(c)), include_zero=False)
    chart = Chart("events per year", years, _span(*(c.to_numpy() for c in counts.values())), y_format="{:g}",
                  x_labels=[(t, f"{t:.0f}") for t in nice_ticks(*years) if t == int(t)],  # no 2023.5
                  x_title="year", y_title="events")
    for name, c in counts.items():
        points = list(zip(c.index.tolist(), c.to_numpy(dtype="float64").tolist()))
        for (y0, n0), (y1, n1) in zip(points, points[1:]):
            whole = y0 not in partial and y1 not in partial
            chart.line([y0, y1], [n0, n1], colors[name], dash="" if whole else "3,3", opacity=1.0 if whole else 0.4)
        for year, n in points:
            chart.dot(year, n, colors[name], opacity=0.4 if year in partial else 1.0)
    for year in sorted(partial):
        if years[0] <= year <= years[1]:
            edge = "end" if year == years[1] else "start" if year == years[0] else "middle"  # inside the frame
            chart.text(chart.x(year), TOP + 11, "partial", anchor=edge)
    return chart.svg()


def _distribution_chart(forward: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str],
                        window: int) -> str:
    column = abnormal_column(window)
    values = {name: forward[name][column].to_numpy(dtype="float64") for name in members if column in forward[name]}
    pooled = np.concatenate(list(values.values())) if values else np.array([])
    shapes = {name: histogram(v, pooled) for name, v in values.items()}
    edges = next(iter(shapes.values()))[1] if shapes else np.array([-0.1, 0.1])
    chart = Chart(f"distribution of {window}-bar abnormal returns", (edges[0], edges[-1]),
                  _span(*(d for d, _ in shapes.values())), y_format="{:g}", x_format="{:.0%}",
                  x_title=f"{column}", y_title="density")
    for name, (density, bins) in shapes.items():
        for left, right, height in zip(bins[:-1], bins[1:], density):
            chart.bar(left, right, height, colors[name], opacity=0.35)
    return chart.svg()


BENCHMARK_TEXT = {
    "market": "Abnormal return: the return in excess of the equal-weighted market of the scanned universe over "
              "the same bars.",
    "market_model": "Abnormal return: the return less beta x the equal-weighted market's, beta fitted per event "
                    "with alpha on bars before it (market model); the fitted alpha is not extrapolated, as it would "
                    "carry the run-up a detector selects on (STATISTICS.md).",
}

NUMBER_COLUMNS = ("detector", "bars", "events", "abnormal mean", "95% interval", "t", "p", "p (Holm)",
                  "vs baseline", "vs t", "vs p", "vs p (Holm)", "note")


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], css: str, text_columns: Sequence[int] = (0,),
           note: bool = False) -> str:
    """An HTML table in a box that scrolls sideways, its cells on one line; the cells of columns not
    in text_columns right-aligned. note: the last column is sentences, which wrap."""
    classes = [" class=note" if note and k == len(head) - 1 else "" if k in text_columns else " class=n"
               for k in range(len(head))]
    lines = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td{c}>{html.escape(str(v))}</td>" for c, v in zip(classes, row)) + "</tr>"
              for row in rows]
    return f"<div class=scroll><table class={css}>{''.join(lines)}</table></div>"


def _numbers(summary: pd.DataFrame, members: list[str]) -> str:
    """The family's numbers, as summary.csv has them: per detector and horizon the events (and those
    with an abnormal return, where fewer), the abnormal mean with its 95% interval, t (a star where
    abn_significant), p and Holm-adjusted p, and for a variant the difference from its baseline with
    its t (starred by vs_significant), p and Holm p. A test without a t shows '-' and the note says why."""
    rows = summary[summary["detector"].isin(members)]
    low, high = intervals(rows["abn_mean"], rows["abn_se"], rows["abn_df"])

    def t_cell(t: float, star: bool, tested: bool = True) -> str:
        return "" if not tested else "-" if not math.isfinite(t) else f"{t:.2f}{'*' if star else ''}"

    cells = []
    for row, lo, hi in zip(rows.to_dict("records"), low, high):
        variant = bool(row["baseline"]) and math.isfinite(row["vs_baseline"])
        cells.append([row["detector"], row["window"], events_text(row["events"], row["abn_valid"]),
                      pct(row["abn_mean"]), f"[{pct(lo)}, {pct(hi)}]" if math.isfinite(lo) else "",
                      t_cell(row["abn_t"], bool(row["abn_significant"])), p_text(row["abn_p"]),
                      p_text(row["abn_p_holm"]), pct(row["vs_baseline"]) if variant else "",
                      t_cell(row["vs_baseline_t"], bool(row["vs_significant"]), variant),
                      p_text(row["vs_baseline_p"]) if variant else "", p_text(row["vs_p_holm"]) if variant else "",
                      row["note"] or ""])
    return _table(NUMBER_COLUMNS, cells, "numbers", note=True)


def verdict(difference: float, tested: bool, significant: bool, looks_ahead: bool = False) -> str:
    """The word for one variant-vs-baseline test: 'better*' or 'worse*' (a higher or lower abnormal
    mean) where it is starred (vs_significant: Holm p < 5%), 'no difference shown' where it is not,
    'no test' where there is no t (too few event dates or symbols), 'looks ahead: not judged' where
    either detector failed the look-ahead check (lookahead_check: warn)."""
    if looks_ahead:
        return LOOKS_AHEAD_VERDICT
    if not tested:
        return "no test"
    if not significant:
        return "no difference shown"
    return "better*" if difference > 0 else "worse*"


LOOKS_AHEAD_VERDICT = "looks ahead: not judged"
FINDING_COLUMNS = ("variant", "bars", "verdict", "difference", "95% interval", "p", "p (Holm)")


def findings(summary: pd.DataFrame) -> str:
    """Per variant, whether it beats its baseline and at which horizons: per horizon the verdict(),
    the difference of abnormal means (vs_baseline) with its 95% interval (per test: t(df) with the
    comparison's own df, vs_baseline_df), p and Holm p. A run without variants
    compared: each detector's starred horizons (abn_significant), or none."""
    compared = summary[(summary["baseline"] != "") & summary["baseline"].isin(summary["detector"])]
    if compared.empty:
        return _starred(summary)
    peeking = set(summary["detector"][summary["note"].str.startswith(LOOKS_AHEAD)])
    low, high = intervals(compared["vs_baseline"], compared["vs_baseline_se"], compared["vs_baseline_df"])
    rows, words = [], {}
    for row, lo, hi in zip(compared.to_dict("records"), low, high):
        word = verdict(row["vs_baseline"], math.isfinite(row["vs_baseline_t"]), bool(row["vs_significant"]),
                       bool({row["detector"], row["baseline"]} & peeking))
        words.setdefault((row["detector"], row["baseline"]), []).append((row["window"], word))
        rows.append([f"{row['detector']} vs {row['baseline']}", row["window"], word, pct(row["vs_baseline"]),
                     f"[{pct(lo)}, {pct(hi)}]" if math.isfinite(lo) else "-", p_text(row["vs_baseline_p"]),
                     p_text(row["vs_p_holm"])])
    sentences = []
    for (name, base), said in words.items():
        better = [f"{h}" for h, w in said if w == "better*"]
        worse = [f"{h}" for h, w in said if w == "worse*"]
        parts = ([f"beats {html.escape(base)} at {', '.join(better)} bars"] if better else []) + \
            ([f"does worse than {html.escape(base)} at {', '.join(worse)} bars"] if worse else [])
        if not parts and any(w == LOOKS_AHEAD_VERDICT for _, w in said):
            parts = [f"is not judged against {html.escape(base)}: one of them looks ahead (lookahead_check: warn)"]
        if not parts:
            tested = any(w != "no test" for _, w in said)
            parts = [f"shows no difference from {html.escape(base)} at any horizon" if tested
                     else f"has no test against {html.escape(base)} (the note in its family's table below says why)"]
        sentences.append(f"<li><b>{html.escape(name)}</b> {' and '.join(parts)}</li>")
    return (f"<h2>Findings</h2><p>Does each variant beat its baseline? The difference of abnormal means, the "
            f"variant's less its baseline's, tested over both detectors' events: better (a higher mean) or worse "
            f"only where starred, p (Holm) &lt; 5% over the run's {int(summary['vs_baseline_p'].notna().sum())} "
            f"comparisons; the interval is per test.</p>"
            f"<ul>{''.join(sentences)}</ul>" + _table(FINDING_COLUMNS, rows, "findings", text_columns=(0, 2)))


def _starred(summary: pd.DataFrame) -> str:
    """The findings of a run without variants: each detector's horizons whose abnormal mean is
    starred (abn_significant), with the mean and its Holm p, or 'none'."""
    tests = int(summary["abn_p"].notna().sum())
    rows = []
    for name, mine in summary.groupby("detector", sort=False):
        starred = mine[mine["abn_significant"].astype(bool)]
        rows.append([name, LOOKS_AHEAD_VERDICT if mine["note"].str.startswith(LOOKS_AHEAD).any() else
                     "; ".join(f"{r['window']} bars: {pct(r['abn_mean'])}, p (Holm) {p_text(r['abn_p_holm'])}"
                               for r in starred.to_dict("records")) or "none"])
    lead = (f"No variant in this run. Horizons at which a detector's mean abnormal return differs from 0, "
            f"starred (p (Holm) &lt; 5% over the run's {tests} tests):" if summary["abn_significant"].astype(bool).any()
            else f"No variant in this run, and no detector's mean abnormal return differs from 0 at any horizon "
                 f"(p (Holm) &lt; 5% over the run's {tests} tests).")
    if summary["note"].str.startswith(LOOKS_AHEAD).any():
        lead += " A detector that looks ahead (lookahead_check: warn) is not judged."
    return f"<h2>Findings</h2><p>{lead}</p>" + _table(("detector", "starred horizons"), rows, "findings",
                                                     note=True)


def _data_quality(summary: pd.DataFrame, info: Mapping[str, Any]) -> str:
    """What the data did (run.json): flagged outlier bars, repairs, the market's membership and thin
    dates, symbols without bars; per detector and horizon the events whose window crosses a flagged
    bar (summary's `flagged`, when it has one), and whether the statistics left them out
    (config exclude_flagged, false when missing)."""
    cfg = info.get("config") or {}
    items = []
    outliers = info.get("market_outliers") or {}
    count, bars = outliers.get("count", 0), outliers.get("bars", [])
    move = cfg.get("market_outlier_move", DEFAULT_OUTLIER_MOVE)
    if move is None:
        items.append("Outlier bars: not looked for (market_outlier_move: null).")
    else:
        beyond = f"beyond +{100 * move:.0f}% / {100 * (1 / (1 + move) - 1):.0f}% (market_outlier_move)"
        if count:
            listed = _table(("symbol", "date", "bar return"),
                            [[b["symbol"], b["date"], pct(b["return"])] for b in bars[:LISTED_OUTLIERS]],
                            "outliers", text_columns=(0, 1))
            more = f" The first {LISTED_OUTLIERS}; run.json market_outliers lists up to 1,000." \
                if count > LISTED_OUTLIERS else ""
            items.append(f"Flagged bars: <b>{count:,}</b> bar return(s) {beyond}: unadjusted splits, relistings or "
                         f"bad prints? Left out of the market index; their symbols' own returns keep them.{more}"
                         f"{listed}")
        else:
            items.append(f"Flagged bars: none (no bar return {beyond}).")
    repaired = repair_totals(info.get("repairs") or {})
    items.append("Repairs of the data (rows; run.json repairs; README, \"The dataset\"): " + ("; ".join(
        f"{kind} <b>{total:,}</b> in {len(names)} symbol(s) ({html.escape(', '.join(names[:3]))}"
        f"{' ...' if len(names) > 3 else ''})" for kind, (total, names) in repaired.items()) or "none") + ".")
    market = info.get("market") or {}
    if market.get("first_date"):
        smallest = market.get("smallest") or {}
        items.append(f"Market: the equal-weighted index of the scanned symbols, {market['first_date']} to "
                     f"{market['last_date']}, {smallest.get('symbols', 0)} to {market.get('largest', 0)} symbols a day "
                     f"(smallest on {smallest.get('date', '-')}); <b>{market.get('thin_dates', 0):,}</b> of its "
                     f"{max(market.get('dates', 1) - 1, 0):,} dates below {market.get('min_market_symbols')} symbols "
                     f"(min_market_symbols), across which there is no abnormal return.")
    empty = info.get("symbols_without_bars") or []
    items.append(f"Symbols without bars: {len(empty)}" + (f" ({html.escape(', '.join(empty[:20]))}"
                                                          f"{' ...' if len(empty) > 20 else ''})" if empty else "")
                 + ".")
    excluded = bool(cfg.get("exclude_flagged", False))
    items.append("Events whose window [event, event + h bars] crosses a flagged bar are " + (
        "<b>left out of the statistics</b> (exclude_flagged: true); the events and forward files still hold them."
        if excluded else "<b>in the statistics</b> (exclude_flagged: false; true leaves them out of the statistics "
                         "only)."))
    flagged = ""
    if "flagged" in summary.columns:
        windows = sorted(summary["window"].unique())
        counts = {(d, w): n for d, w, n in zip(summary["detector"], summary["window"], summary["flagged"])}
        flagged = "<p>Events whose window crosses a flagged bar, per detector and horizon:</p>" + _table(
            ("detector", *(f"{w} bars" for w in windows)),
            [[name, *(f"{int(counts[(name, w)]):,}" if pd.notna(counts.get((name, w), math.nan)) else "-"
                      for w in windows)] for name in dict.fromkeys(summary["detector"])], "flagged")
    return "<h2>Data quality</h2><ul>" + "".join(f"<li>{item}</li>" for item in items) + f"</ul>{flagged}"


def _facts(info: Mapping[str, Any]) -> str:
    symbols = info.get("symbols", {})
    processes = info.get("worker_processes") or 0
    where = (f"the Dask scheduler {info['scheduler_address']}, {processes} worker process(es)"
             if info.get("scheduler_address") else f"{processes} Dask worker process(es)" if processes
             else "this process (serial)")
    failed = ", ".join(html.escape(f["symbol"]) for f in info.get("failed", [])[:20]) or "none"
    market = info.get("market") or {}
    version = info.get("version") or {}
    params = "; ".join(f"{html.escape(name)}: " + (html.escape(", ".join(f"{k}={v}" for k, v in values.items()))
                                                   or "none")
                       for name, values in (info.get("detector_params") or {}).items())
    reused = info.get("reused") or {}
    kept = (f" Kept from {html.escape(str(reused.get('from', '?')))} (neither scanned nor finished again, so not in "
            f"the CPU times): <b>{html.escape(', '.join(reused.get('detectors', [])))}</b>." if reused else "")
    return f"""<h1>symbol scan report</h1>
<p>Run of <b>{html.escape(str(info.get('started', '?')))}</b> with symbol-scan
{html.escape(str(version.get('symbol_scan', '?')))}{f" (git {html.escape(version['git'])})" if version.get('git') else ''};
data {html.escape(str(market.get('first_date', '?')))} to {html.escape(str(market.get('last_date', '?')))}.
Symbols scanned: <b>{symbols.get('done', '?')}</b> of {symbols.get('total', '?')};
failed: <b>{symbols.get('failed', 0)}</b> ({failed}). Ran on: <b>{html.escape(where)}</b>.
Duration: <b>{info.get('wall_seconds', 0):.1f} s</b>.{kept}</p>
<p class=small>Parameters (defaults included): {params or '-'}.</p>
<p>{html.escape(BENCHMARK_TEXT.get((info.get('config') or {}).get('benchmark', 'market'), ''))}
Intervals and bands: 95%, <b>per test (unadjusted)</b>, with standard errors clustered by event date and by symbol,
from Student's t with (the fewer of dates and symbols) - 1 degrees of freedom; none below 10 dates or symbols.
An interval leaves out 0 where the test's own p ("p") is below 5%. A star (*) means "p (Holm)", the p after
Holm's adjustment over the run's tests (the variant comparisons a family of their own), is below 5%: with many
tests, an interval can leave out 0 without a star. summary.csv holds the star as the booleans abn_significant and
vs_significant. Events: all of a detector's events; where fewer have an abnormal return (a window across a thin
market or, for market_model, too short an estimation window) the tables say how many, and the abnormal
statistics use those.</p>"""


def _cpu(info: Mapping[str, Any]) -> str:
    cpu = info.get("cpu_seconds", {})
    total = sum(cpu.values()) or 1.0
    shares = "".join(f"<tr><td>{html.escape(name)}</td><td class=n>{seconds:.1f} s</td>"
                     f"<td class=n>{100 * seconds / total:.0f}%</td></tr>"
                     for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]))
    return f"<h2>CPU time</h2><table><tr><th>detector</th><th>CPU time</th><th>share</th></tr>{shares}</table>"


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>symbol scan report</title>
<style>body{{font-family:sans-serif;margin:16px}} h1{{margin:0 0 4px}} h2{{margin:18px 0 4px}}
.row{{display:flex;flex-wrap:wrap;gap:6px}} table{{border-collapse:collapse}} td,th{{padding:1px 8px}}
th{{text-align:left}} .n{{text-align:right}} .small{{font-size:12px;color:#444}}
.scroll table{{margin:6px 0;font-size:13px}} .scroll td,.scroll th{{border-bottom:1px solid #eee}}
.scroll{{overflow-x:auto}} .scroll td{{white-space:nowrap}} .scroll td.note{{white-space:normal;min-width:14em}}
li{{margin:2px 0}}
.key{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-1px}}</style></head>
<body>{body}</body></html>
"""


def build_report(summary: pd.DataFrame, forward: Mapping[str, pd.DataFrame], paths: pd.DataFrame,
                 info: Mapping[str, Any], quantiles: Mapping[str, pd.DataFrame]) -> str:
    """The whole page as HTML text.

    summary: summarize()'s table (and `flagged`, when it has it); forward: detector -> the event rows
    the statistics used (date, symbol, fwd_<h>, abn_<h>); paths: the event-time paths
    (harness.stats.summary.PATH_COLUMNS); info: the run.json content (symbols, failed, workers,
    scheduler_address, wall_seconds, cpu_seconds, market, market_outliers, repairs, config, ...);
    quantiles: detector -> its score_quantiles() (quantiles.csv's rows).
    """
    detectors = list(dict.fromkeys(summary["detector"]))
    baselines = dict(zip(summary["detector"], summary["baseline"].replace("", None)))
    colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(detectors)}
    market = info.get("market") or {}
    partial = partial_years(market.get("first_date"), market.get("last_date"))
    window = chart_window(sorted(summary["window"].unique()))
    body = [_facts(info), findings(summary), _data_quality(summary, info)]
    for members in families(detectors, baselines):
        legend = " ".join(f"<span class=key style='background:{colors[m]}'></span>{html.escape(m)}" for m in members)
        body.append(f"<h2>{html.escape(' vs '.join(members))}</h2><p>{legend}</p>"
                    f"{_numbers(summary, members)}<div class=row>")
        body += [_path_chart(paths, members, colors, after=True), _path_chart(paths, members, colors, after=False),
                 _window_chart(summary, members, colors), _sign_chart(summary, members, colors),
                 _quintile_chart(quantiles, members, colors, window),
                 _per_year_chart(forward, members, colors, partial),
                 _distribution_chart(forward, members, colors, window), "</div>"]
    grids = sweeps(detectors)
    if grids:
        body.append("<h2>Parameter sweeps</h2><p>Each grid point is a detector of its own: its tests count in "
                    "the run's Holm and Benjamini-Hochberg families, so a sweep of 20 points is 20 more tests "
                    "at each horizon.</p><div class=row>"
                    + "".join(_sweep_chart(summary, root, points) for root, points in grids.items()) + "</div>")
    body.append(_cpu(info))
    return PAGE.format(body="\n".join(body))
