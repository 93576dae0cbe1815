"""What decides a run's staged results, as digests: what --resume compares before it keeps them.

A staged chunk holds what the scan made of its symbols' files with the detectors' code and
parameters of the time. Resuming with any of these changed would mix old and new results in one
output, so run_fingerprint() records, part by part, everything that decides them:

- settings: the config keys that decide the outputs (not where or how fast they are computed);
- symbols: the run's universe;
- code:<detector>: the source of each detector's module (a user's own included) and params:<detector>
  its effective parameters (defaults included);
- reader: the source of the harness code that turns files into staged parts (READER_MODULES).

changed() names the parts that differ, for a one-line refusal. The symbols' input files are
checked separately, per symbol (harness.io's fingerprint of the files' names, sizes and
modification times), since they change one symbol at a time and only those symbols' chunks
need scanning again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from harness.config import ScanConfig
    from harness.detectors import DetectorSpec

# Keys of ScanConfig that do not decide any staged byte: where and how fast the run goes.
NOT_DECIDING = ("workers", "symbols_per_task", "scheduler_address", "dashboard_address", "out_dir", "on_error",
                "security", "ship_code", "allow_version_mismatch", "storage_options",
                "lookahead_check")  # a check of the detectors; warn changes summary.csv, never a staged byte
# The code that turns files into staged parts: reading, forward returns, the task, and the
# staging's own arithmetic (the market's chunk sums, its outlier rule).
READER_MODULES = ("harness.io", "harness.eval", "harness.task", "harness.stats.market", "harness.staging")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _json_digest(value: Any) -> str:
    return digest(json.dumps(value, sort_keys=True, default=str).encode())


def source_digest(function: Any) -> tuple[str, str]:
    """(digest of the source of the module that defines `function`, where that source is). A
    function without a source file (defined in a notebook cell, say) is digested by its compiled
    code and constants, which change when it is edited and rerun."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    try:
        path = inspect.getsourcefile(module or function)
        if path:
            return digest(Path(path).read_bytes()), path
    except (TypeError, OSError):
        pass
    code = getattr(function, "__code__", None)
    if code is None:
        return digest(repr(function).encode()), repr(function)
    return digest(code.co_code + repr(code.co_consts).encode()), f"{code.co_filename}:{code.co_name}"


def run_fingerprint(cfg: ScanConfig, symbols: Sequence[str], detectors: Sequence[DetectorSpec]) -> dict[str, str]:
    """Everything that decides the staged results, part by part (module docstring)."""
    settings = {k: v for k, v in cfg.as_dict().items() if k not in NOT_DECIDING and k not in ("symbols", "params")}
    parts = {"settings": _json_digest(settings), "symbols": _json_digest(list(symbols))}
    for spec in detectors:
        parts[f"code:{spec.name}"] = source_digest(spec.func)[0]
        parts[f"params:{spec.name}"] = _json_digest(spec.params)
    parts["reader"] = digest(b"".join(Path(inspect.getsourcefile(sys.modules[name]) or "").read_bytes()
                                      for name in READER_MODULES))
    return parts


def changed_inputs(staged: Mapping[str, str], ohlcv_path: str, storage_options: Mapping[str, Any]) -> list[str]:
    """The symbols whose input files are not what they were when their chunk was staged (`staged`:
    symbol -> harness.io.symbol_fingerprint then), in symbol order. One listing per symbol."""
    from harness.io import symbol_fingerprint
    return [symbol for symbol, print_then in sorted(staged.items())
            if symbol_fingerprint(symbol, ohlcv_path, storage_options) != print_then]


def changed(saved: Mapping[str, str], now: Mapping[str, str], detectors: Sequence[DetectorSpec]) -> str:
    """What differs between two run_fingerprint()s, in words ("" when nothing does)."""
    where = {f"code:{spec.name}": source_digest(spec.func)[1] for spec in detectors}
    reasons = []
    for part in sorted(set(saved) | set(now), key=lambda p: (p.split(":")[0] != "settings", p)):
        if saved.get(part) == now.get(part):
            continue
        kind, _, name = part.partition(":")
        if kind == "code" and part in saved and part in now:
            reasons.append(f"the code of detector {name!r} ({where[part]})")
        elif kind == "params" and part in saved and part in now:
            reasons.append(f"the parameters of detector {name!r}")
        elif kind in ("code", "params"):
            reasons.append("the list of detectors")
        elif kind == "reader":
            reasons.append("this tool's code that reads and stages the data (" + ", ".join(READER_MODULES) + ")")
        else:
            reasons.append({"settings": "the config", "symbols": "the universe (its symbols)"}.get(kind, kind))
    return ", ".join(dict.fromkeys(reasons))
