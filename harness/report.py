"""report.html: a self-contained page (BokehJS inlined, opens offline) that compares baselines and variants.

Draws only; the numbers come from harness.summary. One row of plots per family (a baseline with its
variants, side by side): mean forward return by window with 95% confidence intervals, hit rate by
window, events per year, and the distribution of the 20-bar forward return; above them the run's
facts and each detector's share of CPU time.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, FactorRange, NumeralTickFormatter, Range1d, Whisker
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from bokeh.resources import INLINE

from harness.eval import forward_column
from harness.summary import confidence_interval, events_per_year, histogram

WIDTH, HEIGHT = 330, 260
DISTRIBUTION_WINDOW = 20


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


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: Category10_10[i % 10] for i, name in enumerate(names)}


def _by_window(summary: pd.DataFrame, members: list[str], colors: dict[str, str], value: str,
               title: str, with_ci: bool) -> Any:
    rows = summary[summary["detector"].isin(members)].copy()
    rows["order"] = rows["detector"].map(members.index)
    rows = rows.sort_values(["window", "order"])
    x = [(str(w), d) for w, d in zip(rows["window"], rows["detector"])]
    low, high = confidence_interval(rows["mean"], rows["std"], rows["valid"])
    source = ColumnDataSource({"x": x, "value": rows[value].to_numpy(), "low": low, "high": high,
                               "color": [colors[d] for d in rows["detector"]], "detector": rows["detector"].tolist()})
    values = rows[value].to_numpy(dtype="float64")
    top = np.nanmax(np.concatenate([values, high if with_ci else values, [0.0]]))
    bottom = np.nanmin(np.concatenate([values, low if with_ci else values, [0.0]]))
    span = (top - bottom) or 1.0
    # headroom above the bars and whiskers for the legend
    y_range = Range1d(bottom - 0.05 * span if bottom < 0 else 0, top + 0.45 * span)
    plot = figure(x_range=FactorRange(*x), y_range=y_range, width=WIDTH, height=HEIGHT, title=title,
                  toolbar_location=None, tooltips=[("detector", "@detector"), (value, "@value{0.0000}")])
    plot.vbar(x="x", top="value", width=0.8, color="color", legend_field="detector", source=source)
    if with_ci:
        plot.add_layout(Whisker(source=source, base="x", lower="low", upper="high"))
    plot.xaxis.major_label_text_font_size = "0pt"  # the detector names are in the legend
    plot.xaxis.group_text_font_size = "10pt"
    plot.yaxis.formatter = NumeralTickFormatter(format="0.0%")
    plot.legend.location = "top_left"
    plot.legend.label_text_font_size = "8pt"
    plot.legend.background_fill_alpha = 0.7
    return plot


def _per_year(forward: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str]) -> Any:
    plot = figure(width=WIDTH, height=HEIGHT, title="events per year", toolbar_location=None)
    plot.y_range.start = 0
    for name in members:
        counts = events_per_year(forward[name]["date"])
        plot.line(counts.index.to_numpy(), counts.to_numpy(), color=colors[name], legend_label=name, line_width=2)
        plot.scatter(counts.index.to_numpy(), counts.to_numpy(), color=colors[name], size=5)
    plot.legend.location = "bottom_right"
    plot.legend.label_text_font_size = "8pt"
    plot.legend.background_fill_alpha = 0.7
    return plot


def _distribution(forward: Mapping[str, pd.DataFrame], members: list[str], colors: dict[str, str]) -> Any:
    column_name = forward_column(DISTRIBUTION_WINDOW)
    plot = figure(width=WIDTH, height=HEIGHT, title=f"distribution of {column_name}", toolbar_location=None)
    values = {name: forward[name][column_name].to_numpy(dtype="float64") for name in members
              if column_name in forward[name]}
    pooled = np.concatenate(list(values.values())) if values else np.array([])
    for name, data in values.items():
        density, edges = histogram(data, pooled)
        plot.quad(top=density, bottom=0, left=edges[:-1], right=edges[1:], fill_color=colors[name],
                  fill_alpha=0.35, line_color=colors[name], legend_label=name)
    plot.xaxis.formatter = NumeralTickFormatter(format="0%")
    plot.legend.label_text_font_size = "8pt"
    plot.legend.background_fill_alpha = 0.7
    return plot


def _facts(info: Mapping[str, Any]) -> Div:
    symbols = info.get("symbols", {})
    where = (f"scheduler {info['scheduler_address']}" if info.get("scheduler_address")
             else f"{info.get('workers')} worker(s)" if info.get("workers", 1) > 1 else "serial (in-process)")
    cpu = info.get("cpu_seconds", {})
    total = sum(cpu.values()) or 1.0
    shares = "".join(f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{seconds:.1f} s</td>"
                     f"<td style='text-align:right'>{100 * seconds / total:.0f}%</td></tr>"
                     for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]))
    failed = ", ".join(html.escape(f["symbol"]) for f in info.get("failed", [])[:20]) or "none"
    text = f"""
    <h1 style="margin-bottom:4px">symbol scan report</h1>
    <p>Symbols scanned: <b>{symbols.get('done', '?')}</b> of {symbols.get('total', '?')};
       failed: <b>{symbols.get('failed', 0)}</b> ({failed}).
       Ran on: <b>{html.escape(where)}</b>. Duration: <b>{info.get('wall_seconds', 0):.1f} s</b>.</p>
    <table style="border-collapse:collapse"><tr><th style="text-align:left">detector</th>
       <th>CPU time</th><th>share</th></tr>{shares}</table>"""
    return Div(text=text, width=900)


def build_report(summary: pd.DataFrame, forward: Mapping[str, pd.DataFrame], info: Mapping[str, Any]) -> str:
    """The whole page as HTML text.

    summary: summarize()'s table; forward: detector -> its forward rows (date, fwd_<h>);
    info: the run.json content (symbols, failed, workers, scheduler_address, wall_seconds, cpu_seconds).
    """
    detectors = list(dict.fromkeys(summary["detector"]))
    baselines = dict(zip(summary["detector"], summary["baseline"].replace("", None)))
    colors = _colors(detectors)
    rows = [_facts(info)]
    for members in families(detectors, baselines):
        label = " vs ".join(members)
        rows.append(Div(text=f"<h2 style='margin:16px 0 0 0'>{html.escape(label)}</h2>", width=900))
        rows.append(row(
            _by_window(summary, members, colors, "mean", "mean forward return (95% CI)", with_ci=True),
            _by_window(summary, members, colors, "hit_rate", "hit rate (share > 0)", with_ci=False),
            _per_year(forward, members, colors),
            _distribution(forward, members, colors)))
    return file_html(column(*rows), resources=INLINE, title="symbol scan report")
