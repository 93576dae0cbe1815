"""What a run records about its staged chunks (state.json, StagedFacts): which chunks are staged,
the commit point of --resume, and what their symbols told, for run.json. StagingFolder
(harness.staging) records each chunk's results here as it stages them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

import numpy as np

from harness.detectors import DetectorSpec
from harness.errors import ScanError
from harness.stats.market import outlier_bars
from harness.task import SymbolResult

MAX_LISTED_OUTLIERS = 1000  # market outliers listed in state.json and run.json (all are counted)


@dataclasses.dataclass
class StagedFacts:
    """What state.json records besides the parts: which chunks are staged (the commit point of
    --resume) and what their symbols told, for run.json. Updated as each chunk is staged."""

    run_key: dict[str, str]            # harness.fingerprint.run_fingerprint() of the run that staged them
    chunks: list[int] = dataclasses.field(default_factory=list)       # staged, sorted
    extra_columns: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # detector -> its extras
    extra_columns_from: dict[str, str] = dataclasses.field(default_factory=dict)   # detector -> the symbol that fixed them
    failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)   # symbol, detector, error
    repairs: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # symbol -> harness.io repairs
    cpu_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # detector -> CPU seconds
    bars: int = 0                      # bars read, over every symbol
    no_bars: list[str] = dataclasses.field(default_factory=list)    # symbols with no bar to scan
    market_outliers: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the first MAX_LISTED_OUTLIERS
    market_outlier_count: int = 0
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)  # symbol -> harness.io.symbol_fingerprint
    contents: dict[str, str] = dataclasses.field(default_factory=dict)  # symbol -> harness.io.bars_digest
    parts: dict[str, str] = dataclasses.field(default_factory=dict)  # staged part's file name -> sha256 of its bytes
    lookahead: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # checked symbol -> its findings

    def to_json(self) -> bytes:
        return json.dumps(vars(self), sort_keys=True).encode()  # asdict() would deep-copy every field: 5x slower

    @classmethod
    def from_json(cls, saved: Any) -> StagedFacts | None:
        """The facts of a parsed state.json; None when it is not one this tool wrote (a key missing
        or of another type)."""
        fresh = dataclasses.asdict(cls({}))
        if not isinstance(saved, dict) or set(saved) != set(fresh) or any(
                type(saved[k]) is not type(v) for k, v in fresh.items()):
            return None
        return cls(**saved)

    def record(self, results: Sequence[SymbolResult], detectors: Sequence[DetectorSpec],
               outlier_move: float | None) -> None:
        """Add a chunk's results: input fingerprints, failures, CPU seconds, repairs, bars, the
        look-ahead check's findings, the bars left out of the market (outlier_move), and each
        detector's extra columns (fix_extra_columns)."""
        ok = [r for r in results if r.error is None]
        for result in results:
            if result.fingerprint:  # what --resume checks the files against (harness.fingerprint)
                self.inputs[result.symbol] = result.fingerprint
            if result.content:  # what a rerun checks the bars against (harness.reuse)
                self.contents[result.symbol] = result.content
            if result.error is not None:
                self.failed.append({"symbol": result.symbol, "detector": result.error.detector,
                                    "error": result.error.message})
        for result in ok:
            for name, seconds in result.cpu_seconds.items():
                self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + seconds
            if result.repairs:
                self.repairs[result.symbol] = result.repairs
            self.bars += result.bars
            if not result.bars:
                self.no_bars.append(result.symbol)
            if result.lookahead:  # harness.task.check_lookahead: kept for a resumed run's summary
                self.lookahead[result.symbol] = result.lookahead
        with_events = [(set(np.unique(r.rows["detector"]).tolist()), r) for r in ok]
        for code, spec in enumerate(detectors):  # extra columns: the same for every symbol with events
            self.fix_extra_columns(spec.name, [(r.symbol, r.extras.get(spec.name))
                                               for codes, r in with_events if code in codes])
        for r in ok:
            for bar in np.flatnonzero(outlier_bars(r.close, outlier_move)) if r.bars else ():
                self.market_outlier_count += 1
                if len(self.market_outliers) < MAX_LISTED_OUTLIERS:
                    self.market_outliers.append({"symbol": r.symbol, "date": str(np.datetime64(int(r.days[bar]), "D")),
                                                 "return": float(r.close[bar] / r.close[bar - 1] - 1)})

    def fix_extra_columns(self, detector: str, seen: Sequence[tuple[str, dict[str, np.ndarray] | None]]) -> None:
        """A detector's extra columns are fixed by the first symbol staged with events (seen:
        (symbol, SymbolResult.extras) pairs); a symbol whose columns differ is an error naming both
        symbols. It stops the run under on_error: skip too: which of the two is wrong cannot be
        told, and which one came first depends on the order tasks finished in."""
        for symbol, columns in seen:
            names = list(columns) if columns is not None else []
            known = self.extra_columns.setdefault(detector, names)
            first = self.extra_columns_from.setdefault(detector, symbol)
            if names != known:
                raise ScanError(f"detector {detector!r} returned extra columns {names} for symbol {symbol!r} but "
                                f"{known} for symbol {first!r}; a detector must return the same extra columns for "
                                "every symbol (--on-error skip cannot tell which is wrong)")
