"""What the look-ahead check costs a default run: whole CLI processes with lookahead_check fail
(the default) and off, alternated.

    python benchmarks/lookahead.py [--data data/ohlcv] [--workers 8] [--rounds 3]

First the check's own CPU, in this process: the CPU seconds of scanning the 3 checked symbols with
and without the check (best of 5 each), against the CPU seconds of scanning every symbol once
(what a run's scan costs, whatever the workers): the check's share of the scan's work, free of the
noise of whole runs. Then the wall: each round runs the same scan twice, with the check and
without, in an order that alternates between rounds (so that a machine growing slower or faster
weighs on both). Prints each run's wall seconds (the process, start to exit) and the ratio check /
no check per round and of the best of each; saves JSON under benchmarks/results/. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness.run import LOOKAHEAD_SYMBOLS  # noqa: E402

MODES = ("fail", "off")


def check_cpu(data: str, reps: int = 5) -> dict[str, float]:
    """CPU seconds: the check's extra on the symbols it checks, and a scan of every symbol."""
    import dataclasses
    from harness.config import load_config
    from harness.detectors import resolve_detectors
    from harness.io import list_symbols
    from harness.task import ScanSettings, scan_symbol
    cfg = load_config({"ohlcv_path": data})
    symbols = list_symbols(cfg.ohlcv_path)
    plain = ScanSettings.from_config(cfg, resolve_detectors(cfg.detectors, cfg.params))
    checked = dataclasses.replace(plain, lookahead_symbols=frozenset(symbols[:LOOKAHEAD_SYMBOLS]))

    def cpu(task: ScanSettings, names: list[str]) -> float:
        started = time.process_time()
        for name in names:
            scan_symbol(name, task)
        return time.process_time() - started

    cpu(plain, symbols[:1])  # imports and caches warm
    first = symbols[:LOOKAHEAD_SYMBOLS]
    extra = min(cpu(checked, first) for _ in range(reps)) - min(cpu(plain, first) for _ in range(reps))
    return {"check_cpu_seconds": extra, "scan_cpu_seconds": cpu(plain, symbols), "symbols": len(symbols)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "ohlcv"))
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cpu = check_cpu(args.data)
    print(f"the check's CPU: {cpu['check_cpu_seconds']:.3f} s on {LOOKAHEAD_SYMBOLS} symbols, against {cpu['scan_cpu_seconds']:.2f} s "
          f"for scanning all {cpu['symbols']}: {cpu['check_cpu_seconds'] / cpu['scan_cpu_seconds']:.2%} of the scan's work")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            seconds = {}
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                config = Path(tmp) / f"{mode}.yaml"
                config.write_text(f"lookahead_check: {mode}\n")
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "harness.run", "--config", str(config), "--data", args.data,
                                "--out", str(Path(tmp) / mode), "--workers", str(args.workers), "-q", "--no-reuse"],
                               check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
                seconds[mode] = time.perf_counter() - started
            rounds.append(seconds)
            print(f"round {r + 1}: check {seconds['fail']:.2f} s, no check {seconds['off']:.2f} s, "
                  f"ratio {seconds['fail'] / seconds['off']:.3f}")
    best = {mode: min(r[mode] for r in rounds) for mode in MODES}
    print(f"best of {args.rounds}: check {best['fail']:.2f} s, no check {best['off']:.2f} s, "
          f"ratio {best['fail'] / best['off']:.3f}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    saved = results / f"lookahead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    saved.write_text(json.dumps({"data": args.data, "workers": args.workers, **cpu, "rounds": rounds, "best": best},
                                indent=1))
    print(f"saved {saved}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
