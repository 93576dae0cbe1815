"""The end of a run: from the staged chunks to the market, market-adjusted returns, statistics and files.

Everything here needs the whole universe (the market index is known only when every symbol is
in), so it runs once, in the driver, after the scan. It streams the staged chunks in chunk order:
memory grows with the number of events (the summary's columns) and of market dates (the paths'
sums), not with the number of bars. The arithmetic lives in harness.market and harness.summary;
this module only moves arrays between them and the files.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.detectors import DetectorSpec
from harness.eval import abnormal_column, forward_column, market_column
from harness.market import event_returns, level_grid, market_index
from harness.output import BAR, FinalFiles, OutputWriter, StagedChunk
from harness.summary import PathSums


@dataclasses.dataclass
class Evaluated:
    """What finish_outputs() computed, for the summary and the report."""

    market: pd.DataFrame               # harness.market.MARKET_COLUMNS
    events: dict[str, pd.DataFrame]    # detector -> date, fwd_<h>, abn_<h>, mkt_<h> of every event
    paths: pd.DataFrame                # harness.summary.PATH_COLUMNS, detectors in run order


def _adjust(chunk: StagedChunk, staged: pa.Table, windows: Sequence[int], offsets: Sequence[int],
            levels: np.ndarray) -> tuple[pa.Table, pd.DataFrame, np.ndarray, np.ndarray]:
    """One detector's staged forward rows of one chunk, market-adjusted.

    Returns the final forward table (abn_<h> added, the bar number dropped), the in-memory columns
    for the summary (date, fwd_<h>, abn_<h>, mkt_<h>), and the event-time (ret, mkt) arrays.
    """
    first, length = chunk.spans_of(staged.column("symbol"))
    bars = staged.column(BAR).to_numpy()
    # one gather for the paths' offsets and the windows (usually among them)
    extra = [h for h in windows if h not in offsets]
    ret, market = event_returns(chunk.days, chunk.close, levels, first, length, bars, [*offsets, *extra])
    at = {k: n for n, k in enumerate([*offsets, *extra])}
    columns = {"date": staged.column("date").to_numpy()}
    table = staged.drop_columns([BAR])
    for h in windows:
        raw = staged.column(forward_column(h)).to_numpy()
        mkt = np.where(np.isnan(raw), np.nan, market[:, at[h]])
        abn = raw - mkt
        table = table.append_column(abnormal_column(h), pa.array(abn, pa.float64()))
        columns.update({forward_column(h): raw, abnormal_column(h): abn, market_column(h): mkt})
    return table, pd.DataFrame(columns), ret[:, :len(offsets)], market[:, :len(offsets)]


def finish_outputs(writer: OutputWriter, files: FinalFiles, detectors: Sequence[DetectorSpec],
                   windows: Sequence[int], offsets: Sequence[int]) -> Evaluated:
    """Write each detector's final events.parquet and forward.parquet (abn_<h> added) and
    market.parquet into `files`; return the market, the events' returns and the paths."""
    market = market_index(writer.market_parts())
    levels = level_grid(market)
    sums = {spec.name: PathSums(offsets, market["date"].to_numpy()) for spec in detectors}
    pieces: dict[str, list[pd.DataFrame]] = {spec.name: [] for spec in detectors}
    for chunk in writer.staged():
        for spec in detectors:
            events_schema, forward_schema = writer.schemas(spec)
            files.append(f"{spec.out_name}/events.parquet", chunk.events[spec.name].cast(events_schema))
            table, frame, path_ret, path_mkt = _adjust(chunk, chunk.forward[spec.name], windows, offsets, levels)
            files.append(f"{spec.out_name}/forward.parquet", table.cast(forward_schema))
            pieces[spec.name].append(frame)
            sums[spec.name].add(frame["date"].to_numpy(), path_ret, path_mkt)
    files.table("market.parquet", pa.Table.from_pandas(market, preserve_index=False))
    events = {name: pd.concat(frames, ignore_index=True) for name, frames in pieces.items()}
    paths = pd.concat([sums[spec.name].paths(spec.name) for spec in detectors], ignore_index=True)
    return Evaluated(market, events, paths)
