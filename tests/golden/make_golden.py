"""Regenerate the golden outputs: `python tests/golden/make_golden.py`.

Only run this when a detector's semantics change on purpose (never for baseline/, which is frozen),
and say so in the commit. The golden universe is harness.synth with 20 symbols, 3 years, seed 11.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

GOLDEN = Path(__file__).resolve().parent
sys.path.insert(0, str(GOLDEN.parents[1]))

from harness.detectors import REGISTERED, resolve_detectors  # noqa: E402
from harness.io import list_symbols  # noqa: E402
from harness.synth import write_universe  # noqa: E402
from harness.task import ScanTask, scan_symbol  # noqa: E402

UNIVERSE = {"symbols": 20, "years": 3, "seed": 11}
WINDOWS = (5, 10, 20, 40)


def golden_frames(root: Path) -> dict[str, pd.DataFrame]:
    """Per detector: symbol, date, score, close, fwd_<h> rows for every symbol under root."""
    specs = resolve_detectors(REGISTERED, {})
    task = ScanTask(str(root), 10_000, None, tuple(specs), WINDOWS)
    pieces: dict[str, list[pd.DataFrame]] = {s.name: [] for s in specs}
    for symbol in list_symbols(str(root)):
        result = scan_symbol(symbol, task)
        assert result.error is None, result.error
        rows = result.rows.to_pandas()
        for code, spec in enumerate(specs):
            part = rows[rows["detector"] == code].drop(columns="detector")
            pieces[spec.name].append(part.assign(symbol=symbol))
    columns = ["symbol", "date", "score", "close", *(f"fwd_{h}" for h in WINDOWS)]
    return {name: pd.concat(p, ignore_index=True)[columns] for name, p in pieces.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ohlcv"
        write_universe(root, **UNIVERSE)
        for name, frame in golden_frames(root).items():
            frame.to_csv(GOLDEN / f"{name}.csv", index=False, float_format="%.17g")
            print(f"{name}: {len(frame)} events")


if __name__ == "__main__":
    main()
