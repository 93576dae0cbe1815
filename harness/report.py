"""report.html: a self-contained page (inline SVG, no script: it opens offline) comparing baselines and variants.

Draws only; the numbers come from harness.stats.summary. One row of charts per family (a baseline with its
variants, on the same charts): the abnormal return around the event with its 95% band, the mean
abnormal return by window with date-clustered 95% intervals, the abnormal hit rate by window,
events per year, and the distribution of the 20-bar forward return; above them the run's facts
and each detector's share of CPU time. The charts are plain SVG written here (a few primitives),
which builds in milliseconds; a plotting library cost seconds per report.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.eval import abnormal_column
from harness.stats.summary import events_per_year, histogram, intervals

WIDTH, HEIGHT = 330, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 28, 34  # margins around the plotting area
DISTRIBUTION_WINDOW = 20
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

    def line(self, xs: Iterable[float], ys: Iterable[float], color: str, width: float = 2, dash: str = "") -> None:
        """A polyline through the finite points (a gap where a value is NaN)."""
        runs, run = [], []
        for a, b in zip(xs, ys):
            if math.isfinite(a) and math.isfinite(b):
                run.append(f"{self.x(a):.1f},{self.y(b):.1f}")
            elif run:
                runs.append(run)
                run = []
        runs.append(run)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts += [f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" stroke-width="{width}"{dashed}/>'
                       for r in runs if r]

    def band(self, xs: Sequence[float], low: Sequence[float], high: Sequence[float], color: str) -> None:
        points = [(a, lo, hi) for a, lo, hi in zip(xs, low, high) if math.isfinite(lo) and math.isfinite(hi)]
        if points:
            path = [f"{self.x(a):.1f},{self.y(hi):.1f}" for a, _, hi in points]
            path += [f"{self.x(a):.1f},{self.y(lo):.1f}" for a, lo, _ in reversed(points)]
            self.parts.append(f'<polygon points="{" ".join(path)}" fill="{color}" fill-opacity="0.15" stroke="none"/>')

    def bar(self, left: float, right: float, value: float, color: str, opacity: float = 1.0) -> None:
        if math.isfinite(value):
            top, base = sorted((self.y(value), self.y(max(self.y0, min(0.0, self.y1)))))
            self.parts.append(f'<rect x="{self.x(left):.1f}" y="{top:.1f}" width="{self.x(right) - self.x(left):.1f}" '
                              f'height="{max(base - top, 0.5):.1f}" fill="{color}" fill-opacity="{opacity}"/>')

    def whisker(self, at: float, low: float, high: float) -> None:
        if math.isfinite(low) and math.isfinite(high):
            x = self.x(at)
            self.parts.append(f'<path d="M{x:.1f},{self.y(low):.1f}V{self.y(high):.1f}M{x - 3:.1f},{self.y(low):.1f}'
                              f'h6M{x - 3:.1f},{self.y(high):.1f}h6" stroke="#333" fill="none"/>')

    def dot(self, at: float, value: float, color: str) -> None:
        if math.isfinite(value):
            self.parts.append(f'<circle cx="{self.x(at):.1f}" cy="{self.y(value):.1f}" r="2.5" fill="{color}"/>')

    def svg(self) -> str:
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
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-size="10" '
                f'font-family="sans-serif"><text x="{WIDTH / 2}" y="14" text-anchor="middle" font-size="12" '
                f'font-weight="bold">{html.escape(self.title)}</text>'
                f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
                f'fill="none" stroke="#ccc"/>{"".join(axes)}{"".join(self.parts)}</svg>')


def _span(*arrays: Iterable[float], include_zero: bool = True) -> tuple[float, float]:
    values = np.concatenate([np.asarray(list(a), dtype="float64") for a in arrays] + [np.zeros(int(include_zero))])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)


def _path_chart(paths: pd.DataFrame, members: list[str], colors: dict[str, str], after: bool) -> str:
    """The cumulative abnormal return from the event bar (0 there) with its 95% band, after the event
    (offsets >= 0: the drift a researcher looks for) or before it (<= 0: the run-up the detector
    followed), each on its own scale so that one does not flatten the other."""
    rows = {name: paths[(paths["detector"] == name) & ((paths["offset"] >= 0) if after else (paths["offset"] <= 0))]
            for name in members}
    title = ("cumulative abnormal return after the event" if after
             else "before the event (abnormal return to day 0)")
    chart = Chart(title, _span(*(r["offset"] for r in rows.values())),
                  _span(*(r["abn_low"] for r in rows.values()), *(r["abn_high"] for r in rows.values()),
                        *(r["mean_abn"] for r in rows.values())), x_title="bars from the event",
                  y_title="abnormal return")
    for name, r in rows.items():
        chart.band(r["offset"].tolist(), r["abn_low"].tolist(), r["abn_high"].tolist(), colors[name])
        chart.line(r["offset"], r["mean_abn"], colors[name])
    return chart.svg()


def _window_chart(summary: pd.DataFrame, members: list[str], colors: dict[str, str], value: str,
                  title: str, with_ci: bool, y_format: str = "{:.1%}", reference: str | None = None,
                  y_title: str = "") -> str:
    rows = summary[summary["detector"].isin(members)]
    windows = sorted(rows["window"].unique())
    low, high = intervals(rows["abn_mean"], rows["abn_se"], rows["abn_df"])
    span = _span(rows[value], *((low, high) if with_ci else ()), *((rows[reference],) if reference else ()))
    chart = Chart(title, (0, len(windows)), span, y_format=y_format,
                  x_labels=[(i + 0.5, f"{w} bars") for i, w in enumerate(windows)], x_title="horizon",
                  y_title=y_title)
    width = 0.8 / max(len(members), 1)
    for row, lo, hi in zip(rows.to_dict("records"), low, high):
        left = windows.index(row["window"]) + 0.1 + members.index(row["detector"]) * width
        chart.bar(left, left + width, row[value], colors[row["detector"]])
        if with_ci:
            chart.whisker(left + width / 2, lo, hi)
        if reference is not None and math.isfinite(row[reference]):  # the value expected by chance
            chart.line([left, left + width], [row[reference]] * 2, "#000", width=1.5, dash="2,2")
    return chart.svg()


def _per_year_chart(forward: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str]) -> str:
    counts = {name: events_per_year(forward[name]["date"]) for name in members}
    years = _span(*(c.index for c in counts.values() if len(c)), include_zero=False)
    chart = Chart("events per year", years, _span(*(c.to_numpy() for c in counts.values())), y_format="{:g}",
                  x_format="{:.0f}", x_title="year", y_title="events")
    for name, c in counts.items():
        chart.line(c.index.to_numpy(dtype="float64"), c.to_numpy(dtype="float64"), colors[name])
        for year, n in c.items():
            chart.dot(year, n, colors[name])
    return chart.svg()


def _distribution_chart(forward: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str]) -> str:
    column = abnormal_column(DISTRIBUTION_WINDOW)
    values = {name: forward[name][column].to_numpy(dtype="float64") for name in members if column in forward[name]}
    pooled = np.concatenate(list(values.values())) if values else np.array([])
    shapes = {name: histogram(v, pooled) for name, v in values.items()}
    edges = next(iter(shapes.values()))[1] if shapes else np.array([-0.1, 0.1])
    chart = Chart(f"distribution of {DISTRIBUTION_WINDOW}-bar abnormal returns", (edges[0], edges[-1]),
                  _span(*(d for d, _ in shapes.values())), y_format="{:g}", x_format="{:.0%}",
                  x_title=f"{column}", y_title="density")
    for name, (density, bins) in shapes.items():
        for left, right, height in zip(bins[:-1], bins[1:], density):
            chart.bar(left, right, height, colors[name], opacity=0.35)
    return chart.svg()


BENCHMARK_TEXT = {
    "market": "Abnormal return: the return in excess of the equal-weighted market of the scanned universe over "
              "the same bars.",
    "market_model": "Abnormal return: the return less alpha + beta x the equal-weighted market's, alpha and beta "
                    "fitted per event on bars before it (market model).",
}


def _numbers(summary: pd.DataFrame, members: list[str]) -> str:
    """The family's numbers, as summary.csv has them: per detector and horizon the events with an
    abnormal return, the abnormal mean with its 95% interval, t and Holm-adjusted p (a star where
    summary.csv's abn_significant is true), and for a variant the difference from its baseline with
    its t (starred by vs_significant). A test without a t shows '-' and the note says why."""
    rows = summary[summary["detector"].isin(members)]
    low, high = intervals(rows["abn_mean"], rows["abn_se"], rows["abn_df"])

    def pct(v: float) -> str:
        return "" if not math.isfinite(v) else f"{100 * v:+.2f}%"

    def t_cell(t: float, star: bool, tested: bool = True) -> str:
        return "" if not tested else "-" if not math.isfinite(t) else f"{t:.2f}{'*' if star else ''}"

    lines = []
    for row, lo, hi in zip(rows.to_dict("records"), low, high):
        variant = bool(row["baseline"]) and math.isfinite(row["vs_baseline"])
        interval = f"[{pct(lo)}, {pct(hi)}]" if math.isfinite(lo) else ""
        cells = [row["detector"], f"{row['window']}", f"{row['abn_valid']}", pct(row["abn_mean"]), interval,
                 t_cell(row["abn_t"], bool(row["abn_significant"])),
                 "" if not math.isfinite(row["abn_p_holm"]) else f"{row['abn_p_holm']:.3f}",
                 pct(row["vs_baseline"]) if variant else "",
                 t_cell(row["vs_baseline_t"], bool(row["vs_significant"]), variant), row["note"] or ""]
        lines.append("<tr>" + "".join(f"<td{' class=n' if 0 < k < 9 else ''}>{html.escape(str(c))}</td>"
                                      for k, c in enumerate(cells)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("detector", "bars", "events", "abnormal mean", "95% interval", "t",
                                              "p (Holm)", "vs baseline", "vs t", "note"))
    return f"<table class=numbers><tr>{head}</tr>{''.join(lines)}</table>"


def _facts(info: Mapping[str, Any]) -> str:
    symbols = info.get("symbols", {})
    processes = info.get("worker_processes") or 0
    where = (f"the Dask scheduler {info['scheduler_address']}, {processes} worker process(es)"
             if info.get("scheduler_address") else f"{processes} Dask worker process(es)" if processes
             else "this process (serial)")
    cpu = info.get("cpu_seconds", {})
    total = sum(cpu.values()) or 1.0
    shares = "".join(f"<tr><td>{html.escape(name)}</td><td class=n>{seconds:.1f} s</td>"
                     f"<td class=n>{100 * seconds / total:.0f}%</td></tr>"
                     for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]))
    failed = ", ".join(html.escape(f["symbol"]) for f in info.get("failed", [])[:20]) or "none"
    market = info.get("market") or {}
    smallest = market.get("smallest") or {}
    membership = (f"<p>Market: the equal-weighted index of the scanned symbols, {market['first_date']} to "
                  f"{market['last_date']}, {smallest.get('symbols', 0)} to {market.get('largest', 0)} symbols a day "
                  f"(smallest on {smallest.get('date', '-')}); <b>{market.get('thin_dates', 0)}</b> dates below "
                  f"{market.get('min_market_symbols')} symbols, across which there is no abnormal return.</p>"
                  if market.get("first_date") else "")
    version = info.get("version") or {}
    params = "; ".join(f"{html.escape(name)}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "none")
                       for name, values in (info.get("detector_params") or {}).items())
    return f"""<h1>symbol scan report</h1>
<p>Run of <b>{html.escape(str(info.get('started', '?')))}</b> with symbol-scan
{html.escape(str(version.get('symbol_scan', '?')))}{f" (git {html.escape(version['git'])})" if version.get('git') else ''};
data {html.escape(str(market.get('first_date', '?')))} to {html.escape(str(market.get('last_date', '?')))}.
Symbols scanned: <b>{symbols.get('done', '?')}</b> of {symbols.get('total', '?')};
failed: <b>{symbols.get('failed', 0)}</b> ({failed}). Ran on: <b>{html.escape(where)}</b>.
Duration: <b>{info.get('wall_seconds', 0):.1f} s</b>.</p>
<p class=small>Parameters (defaults included): {params or '-'}.</p>
{membership}
<p>{html.escape(BENCHMARK_TEXT.get((info.get('config') or {}).get('benchmark', 'market'), ''))}
Intervals and bands: 95%, with standard errors clustered by event date and by symbol, from Student's t with
(the fewer of dates and symbols) - 1 degrees of freedom; none below 10 dates or symbols. A star in
summary.csv and on the terminal means p &lt; 5% after Holm's adjustment over the run's tests.</p>
<table><tr><th>detector</th><th>CPU time</th><th>share</th></tr>{shares}</table>"""


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>symbol scan report</title>
<style>body{{font-family:sans-serif;margin:16px}} h1{{margin:0 0 4px}} h2{{margin:18px 0 4px}}
.row{{display:flex;flex-wrap:wrap;gap:6px}} table{{border-collapse:collapse}} td,th{{padding:1px 8px}}
th{{text-align:left}} .n{{text-align:right}} .small{{font-size:12px;color:#444}}
table.numbers{{margin:6px 0;font-size:13px}} table.numbers td,table.numbers th{{border-bottom:1px solid #eee}}
.scroll{{overflow-x:auto}}
.key{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-1px}}</style></head>
<body>{body}</body></html>
"""


def build_report(summary: pd.DataFrame, forward: Mapping[str, pd.DataFrame], paths: pd.DataFrame,
                 info: Mapping[str, Any]) -> str:
    """The whole page as HTML text.

    summary: summarize()'s table; forward: detector -> its event rows (date, fwd_<h>);
    paths: the event-time paths (harness.stats.summary.PATH_COLUMNS);
    info: the run.json content (symbols, failed, workers, scheduler_address, wall_seconds, cpu_seconds).
    """
    detectors = list(dict.fromkeys(summary["detector"]))
    baselines = dict(zip(summary["detector"], summary["baseline"].replace("", None)))
    colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(detectors)}
    body = [_facts(info)]
    for members in families(detectors, baselines):
        legend = " ".join(f"<span class=key style='background:{colors[m]}'></span>{html.escape(m)}" for m in members)
        body.append(f"<h2>{html.escape(' vs '.join(members))}</h2><p>{legend}</p>"
                    f"<div class=scroll>{_numbers(summary, members)}</div><div class=row>")
        body += [_path_chart(paths, members, colors, after=True), _path_chart(paths, members, colors, after=False),
                 _window_chart(summary, members, colors, "abn_mean", "mean abnormal return (95% CI)", True),
                 _window_chart(summary, members, colors, "abn_hit_rate", "abnormal hit rate (dashes: by chance)",
                               False, y_format="{:.0%}", reference="null_hit_rate"),
                 _per_year_chart(forward, members, colors),
                 _distribution_chart(forward, members, colors), "</div>"]
    return PAGE.format(body="\n".join(body))
