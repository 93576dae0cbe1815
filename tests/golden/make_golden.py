"""Regenerate the golden outputs: `python tests/golden/make_golden.py [--new-input]`.

The golden input is committed: tests/golden/ohlcv/, 20 symbols x 3 years written once by
harness.synth (seed 11) and stored with zstd. The golden outputs pin what the detectors (and the
reader, and forward returns) make of those bars, so a change to the generator does not touch them.
Only regenerate the outputs when a detector's semantics change on purpose (never for baseline/,
which is frozen), and say so in the commit. `--new-input` rewrites the input from the generator
first; that changes every golden file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

GOLDEN = Path(__file__).resolve().parent
INPUT = GOLDEN / "ohlcv"
sys.path.insert(0, str(GOLDEN.parents[1]))

from harness.detectors import REGISTERED, resolve_detectors  # noqa: E402
from harness.io import list_symbols  # noqa: E402
from harness.synth import write_universe  # noqa: E402
from harness.task import ScanSettings, scan_symbol  # noqa: E402

UNIVERSE = {"symbols": 20, "years": 3, "seed": 11}
WINDOWS = (5, 10, 20, 40)


def golden_frames(root: Path) -> dict[str, pd.DataFrame]:
    """Per detector: symbol, date, score, close, fwd_<h> rows for every symbol under root."""
    specs = resolve_detectors(REGISTERED, {})
    task = ScanSettings(str(root), 10_000, None, tuple(specs), WINDOWS)
    pieces: dict[str, list[pd.DataFrame]] = {s.name: [] for s in specs}
    for symbol in list_symbols(str(root)):
        result = scan_symbol(symbol, task)
        assert result.error is None, result.error
        rows = pd.DataFrame(result.rows)
        for code, spec in enumerate(specs):
            part = rows[rows["detector"] == code].drop(columns="detector")
            pieces[spec.name].append(part.assign(symbol=symbol))
    columns = ["symbol", "date", "score", "close", *(f"fwd_{h}" for h in WINDOWS)]
    return {name: pd.concat(p, ignore_index=True)[columns] for name, p in pieces.items()}


def write_input() -> None:
    """Replace tests/golden/ohlcv with the generator's universe, recompressed (zstd) to keep it small."""
    with tempfile.TemporaryDirectory() as tmp:
        write_universe(Path(tmp), **UNIVERSE)
        if INPUT.exists():
            shutil.rmtree(INPUT)
        for path in sorted(Path(tmp).rglob("*.parquet")):
            target = INPUT / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pq.read_table(path), target, compression="zstd", compression_level=19)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-input", action="store_true", help="rewrite the input bars from harness.synth first")
    if parser.parse_args().new_input:
        write_input()
    for name, frame in golden_frames(INPUT).items():
        frame.to_csv(GOLDEN / f"{name}.csv", index=False, float_format="%.17g")
        print(f"{name}: {len(frame)} events")


if __name__ == "__main__":
    main()
