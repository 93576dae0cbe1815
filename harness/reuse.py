"""Reuse of an earlier run's unchanged detectors: a rerun scans and finishes only what changed.

A complete run leaves REUSE_RECORD (`.symbol-scan-reuse.json`) among its files. It holds:
- `base`: the digest of everything that decides every detector's files and statistics but the
  detectors themselves: the settings (the config but where and how fast it runs, and but the list
  of detectors, their parameters and baselines), the universe, this tool's code (every module of
  its packages harness, baseline and cluster: an edit of any, report.py's included, keeps nothing)
  and the versions of Python, pandas, numpy, pyarrow, dask and distributed (harness.fingerprint.
  versions);
- `inputs`: each symbol's input files' fingerprint (harness.io.symbol_fingerprint: names, sizes,
  modification times), and `contents`: the digest of the bars read from them (harness.io.bars_digest);
- `null_hit_rates`: the sign test's universe-wide null, which depends on the market only;
- `failed`: the symbols it skipped (on_error: skip);
- per detector: its `key` (its name, the function it runs, the digest of its code and of its
  parameters: harness.fingerprint), the sha256 of its files, its look-ahead finding, and
  its statistics: its summary rows (detector_summary), score quantiles and paths, and (with
  exclude_flagged) the rows of its events whose window crosses a flagged bar.

The next run into the folder (config `reuse`, default on; --no-reuse) keeps a detector when the
base and its key are the same and its files are those recorded (their sha256): it is neither
scanned nor finished; its files stay where they are, its statistics come from the record, and the
statistics that span detectors (vs baseline, Holm and Benjamini-Hochberg) are computed again with
every detector's, a kept one's events read back from its forward file (date, symbol, fwd_<h>,
abn_<h>). Anything that changes the market index means every detector runs: the base covers the
settings and the universe, and the inputs are compared after the scan (the tasks fingerprint what
they read anyway, so no serial listing runs first): a symbol whose files changed (their names,
sizes and modification times) or whose bars did (a file rewritten at the same size and time), or
a symbol that failed now, and the run starts again without reuse (ReuseAbandoned); a previous run
that skipped failed symbols keeps nothing. So the folder after a reusing run holds the bytes a
fresh run would have written, this record included; run.json and report.html say when they ran.
The record ends with the digest of the rest (`digest`): one edited by hand is no record.

The previous run's files are not touched until the new run commits its own (harness.final_files):
a reusing run killed at any moment leaves them as they were.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import stat
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness.detectors import DetectorSpec
from harness.errors import ScanError
from harness.eval import abnormal_column, flagged_column, forward_column
from harness.fingerprint import NOT_DECIDING, code_files, code_roots, digest, stable_repr, underlying, versions
from harness.detector_files import file_names
from harness.outdir import REUSE_RECORD

log = logging.getLogger("scan")

FORMAT = 1  # of the record: a record of another format is not read
# Config keys about the detectors themselves: each detector's own key covers what decides its bytes
# (its name, code and parameters); baselines change only the statistics that span detectors.
DETECTOR_KEYS = ("symbols", "detectors", "params", "detector_entries")


class ReuseAbandoned(ScanError):
    """The scan found what the record could not show before it (a symbol's files changed, a symbol
    failed): the run starts again, every detector scanned (harness.run.run_scan)."""


@dataclasses.dataclass(frozen=True)
class Reuse:
    """What a run keeps from the previous one (plan_reuse)."""

    kept: dict[str, dict[str, Any]]    # detector name -> its entry in the previous record
    inputs: dict[str, str]             # symbol -> the fingerprint of the files the previous run read
    contents: dict[str, str]           # symbol -> the digest of the bars it read (harness.io.bars_digest)
    null_hit_rates: dict[int, float]
    since: str                         # when the previous run started (its run.json), for messages


def _json_digest(value: Any) -> str:
    return digest(json.dumps(value, sort_keys=True, default=str).encode())


# This tool's own code: a change to any of it may change every detector's bytes (a user's detector
# may call the baselines too).
TOOL_PACKAGES = ("harness", "baseline", "cluster")


def base_key(settings: Mapping[str, Any], symbols: Sequence[str]) -> str:
    """The digest of what decides every detector's bytes but the detectors themselves (module
    docstring); settings: ScanConfig.as_dict()."""
    deciding = {k: v for k, v in settings.items() if k not in NOT_DECIDING and k not in DETECTOR_KEYS}
    tool = [(package, path, digest(data)) for package in TOOL_PACKAGES for path, data in code_files(package)[1]]
    return _json_digest({"settings": deciding, "symbols": list(symbols), "tool": tool, "versions": versions()})


def detector_key(spec: DetectorSpec, code: str) -> str:
    """The digest of what decides one detector's own bytes: its name (a column of its files), the
    function it runs (by module and name, and a partial's arguments: harness.fingerprint.underlying),
    its code (code: harness.fingerprint.source_digest) and its parameters."""
    function, bound = underlying(spec.func)
    return _json_digest({"name": spec.name, "function": stable_repr(function), "bound": bound, "code": code,
                         "params": spec.params})


def has_source_files(spec: DetectorSpec) -> bool:
    """Whether every module of a detector's code is a file (harness.fingerprint.code_files): a
    function defined in a notebook or on stdin is digested by its own bytecode only, which misses a
    helper it calls, so such a detector is never kept."""
    roots = code_roots(spec.func)
    try:
        return bool(roots) and all(code_files(root) is not None for root in roots)
    except Exception:  # a module that no longer imports
        return False


def _read_regular(path: Path) -> bytes:
    """A file's bytes, without following a symlink or opening a FIFO or a device (OSError then)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str | None:
    """The sha256 of a regular file's bytes; None when it is not one (a symlink, a FIFO) or cannot
    be read."""
    try:
        return hashlib.sha256(_read_regular(path)).hexdigest()
    except OSError:
        return None


def _sealed(record: Mapping[str, Any]) -> str:
    """The digest a record carries of the rest of its content (record_text)."""
    return _json_digest({k: v for k, v in record.items() if k != "digest"})


def read_record(out_dir: Path) -> dict[str, Any] | None:
    """The previous run's record in out_dir; None when there is none, or not one this version wrote
    as it is now (its own digest differs: edited, cut short, another format)."""
    try:
        record = json.loads(_read_regular(out_dir / REUSE_RECORD))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("digest") != _sealed(record):
        return None
    return record


def previous_start(out_dir: Path) -> str:
    """When the run that wrote out_dir's run.json started ("the previous run" when unknown)."""
    try:
        started = json.loads(_read_regular(out_dir / "run.json")).get("started")
    except (OSError, ValueError, AttributeError):
        started = None
    return f"the run of {started}" if isinstance(started, str) else "the previous run"


def keepable(out_dir: Path, base: str, keys: Mapping[str, str], specs: Sequence[DetectorSpec]
             ) -> tuple[Reuse | None, dict[str, str]]:
    """Which detectors of `specs` (keys: name -> detector_key) the previous run in out_dir left
    unchanged, their files intact (a Reuse, None when none is), and why each other one is not."""
    record = read_record(out_dir)
    if record is None and not (out_dir / REUSE_RECORD).exists() and not (out_dir / "run.json").exists():
        return None, {}  # a first run into the folder: nothing to say
    since = previous_start(out_dir)
    everyone = (f"{since} left no record of its own (none, or edited since)" if record is None
                else f"the config, the universe or this tool's code changed since {since}"
                if record["base"] != base else f"{since} skipped failed symbols" if record["failed"] else "")
    why: dict[str, str] = {}
    kept = {}
    for spec in specs:
        entry = record["detectors"].get(spec.name) if not everyone else None
        if everyone:
            why[spec.name] = everyone
        elif not isinstance(entry, dict) or entry.get("key") != keys[spec.name]:
            why[spec.name] = "it is new, or its code, parameters or what it runs changed"
        elif not has_source_files(spec):
            why[spec.name] = "its code has no source file to check (a notebook's or stdin's function)"
        elif not _readable(entry):
            why[spec.name] = "its entry in the record is not one this version reads"
        elif not all(sha256_file(out_dir / spec.out_name / name) == sha for name, sha in entry["files"].items()):
            why[spec.name] = "its files are not those the previous run wrote"
        else:
            kept[spec.name] = entry
    if not kept:
        return None, why
    return Reuse(kept, dict(record["inputs"]), dict(record["contents"]), {int(h): math.nan if rate is None else float(rate)
                                                for h, rate in record["null_hit_rates"].items()},
                 since), why


def plan_reuse(out_dir: Path, base: str, keys: Mapping[str, str], specs: Sequence[DetectorSpec],
               staged: Sequence[str] | None = None) -> Reuse | None:
    """What a run keeps of the previous one (keepable()), said in the log. staged: the detectors an
    unfinished run being resumed scanned (None: not a resume): it keeps the others, and a ScanError
    says so when one of them can no longer be kept."""
    try:
        reuse, why = keepable(out_dir, base, keys, specs)
    except Exception:  # a record that is not what this version writes, though sealed: keep nothing
        reuse, why = None, {spec.name: "its record is not one this version reads" for spec in specs}
    if staged is not None:
        expected = [spec.name for spec in specs if spec.name not in staged]
        lost = [name for name in expected if reuse is None or name not in reuse.kept]
        if lost:
            raise ScanError(f"--resume: the unfinished run kept detector {lost[0]!r} from the previous run, but it can "
                            f"no longer be kept ({why.get(lost[0], 'the previous run left no record')}); rerun without --resume")
        if not expected:
            return None
        reuse = dataclasses.replace(reuse, kept={name: reuse.kept[name] for name in expected})
    if reuse is None:
        reasons = set(why.values())
        if why and len(reasons) == 1:
            log.info("Not reusing: %s", reasons.pop())
        return None
    log.info("Reusing %d of %d detectors from %s: %s", len(reuse.kept), len(specs), reuse.since,
             ", ".join(name for name in (s.name for s in specs) if name in reuse.kept))
    return reuse


def _readable(entry: Mapping[str, Any]) -> bool:
    """Whether a record's entry holds what a kept detector needs: its tables, its finding, its files'
    digests (a record sealed by another version is not trusted: its detector is scanned)."""
    try:
        for table in ("summary", "quantiles", "paths"):
            decode_table(entry[table])
        return (isinstance(entry["lookahead"], str) and isinstance(entry.get("flagged", {}), dict)
                and sorted(entry["files"]) == sorted(file_names()))
    except Exception:
        return False


def abandoned(reuse: Reuse, inputs: Mapping[str, str], contents: Mapping[str, str],
              failed: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the kept detectors' files would not be a fresh run's, seen after the scan: a symbol's
    input files changed since the previous run read them (inputs: symbol -> fingerprint now), or
    the bars read from them (contents: symbol -> bars_digest now; a file rewritten at the same size
    and time), or a symbol failed (its rows would be left out of every detector's files). None
    when they would be."""
    for what, now, then in (("input files", inputs, reuse.inputs), ("bars", contents, reuse.contents)):
        changed = sorted(s for s in set(now) | set(then) if now.get(s) != then.get(s))
        if changed:
            return (f"the {what} of {len(changed)} symbol(s) changed since {reuse.since} "
                    f"({', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''})")
    if failed:
        return f"symbol {failed[0]['symbol']!r} failed"
    return None


# ---------------------------------------------------------------- tables in the record

def encode_table(frame: pd.DataFrame) -> dict[str, Any]:
    """A small table as JSON: its columns, in order, their dtypes and values (floats as their
    repr, which reads back to the same bits; NaN as NaN)."""
    return {"columns": [str(c) for c in frame.columns], "dtypes": [str(frame[c].dtype) for c in frame.columns],
            "values": [frame[c].tolist() for c in frame.columns]}


def decode_table(encoded: Mapping[str, Any]) -> pd.DataFrame:
    """encode_table() read back: the same columns, dtypes and values."""
    return pd.DataFrame({c: pd.Series(values, dtype=dtype)  # pandas' own dtypes too: a missing text stays missing
                         for c, dtype, values in zip(encoded["columns"], encoded["dtypes"], encoded["values"])})


@dataclasses.dataclass
class KeptStatistics:
    """A kept detector's part of the run's statistics, as harness.finish computes a scanned one's."""

    events: pd.DataFrame               # date, symbol (its code in the run), fwd_<h>, abn_<h>[, flagged_<h>]
    summary: pd.DataFrame              # detector_summary()
    quantiles: pd.DataFrame            # score_quantiles()
    paths: pd.DataFrame                # PATH_COLUMNS


def kept_statistics(out_dir: Path, spec: DetectorSpec, entry: Mapping[str, Any], windows: Sequence[int],
                    symbols: Sequence[str], exclude_flagged: bool) -> KeptStatistics:
    """A kept detector's statistics from the record, and its events' columns from its forward file:
    those the statistics that span detectors and the report use. With exclude_flagged the returns
    of the events whose window crosses a flagged bar are NaN, as a scanned detector's are."""
    names = ["symbol", "date", *(c for h in windows for c in (forward_column(h), abnormal_column(h)))]
    try:
        return _kept_statistics(out_dir, spec, entry, windows, symbols, exclude_flagged, names)
    except Exception as exc:  # its file or its entry is not what the record says: start again, all scanned
        raise ReuseAbandoned(f"the kept detector {spec.name!r} cannot be read back ({type(exc).__name__}: {exc})") from None


def _kept_statistics(out_dir: Path, spec: DetectorSpec, entry: Mapping[str, Any], windows: Sequence[int],
                     symbols: Sequence[str], exclude_flagged: bool, names: list[str]) -> KeptStatistics:
    table = pq.read_table(out_dir / spec.out_name / "forward.parquet", columns=names)
    codes = np.searchsorted(np.asarray(symbols, dtype=object), table.column("symbol").to_numpy(zero_copy_only=False))
    columns: dict[str, np.ndarray] = {"date": table.column("date").to_numpy(), "symbol": codes.astype(np.int32)}
    for h in windows:
        fwd, abn = (table.column(column(h)).to_numpy() for column in (forward_column, abnormal_column))
        if exclude_flagged:
            crossed = np.zeros(len(fwd), dtype=bool)
            crossed[np.asarray(entry["flagged"][str(h)], dtype=np.int64)] = True
            fwd, abn = np.where(crossed, np.nan, fwd), np.where(crossed, np.nan, abn)
            columns[flagged_column(h)] = crossed & ~np.isnan(table.column(forward_column(h)).to_numpy())
        columns[forward_column(h)], columns[abnormal_column(h)] = fwd, abn
    return KeptStatistics(pd.DataFrame(columns, copy=False), decode_table(entry["summary"]),
                          decode_table(entry["quantiles"]), decode_table(entry["paths"]))


def record_entry(key: str, files: Mapping[str, str], lookahead: str, summary: pd.DataFrame,
                 quantiles: pd.DataFrame, paths: pd.DataFrame, events: pd.DataFrame, windows: Sequence[int],
                 exclude_flagged: bool) -> dict[str, Any]:
    """One detector's entry in the record (module docstring). events: its statistics' columns
    (harness.finish.Evaluated.events); its flagged rows are kept with exclude_flagged only."""
    entry = {"key": key, "files": dict(files), "lookahead": lookahead, "summary": encode_table(summary),
             "quantiles": encode_table(quantiles), "paths": encode_table(paths)}
    if exclude_flagged:
        entry["flagged"] = {str(h): np.flatnonzero(events[flagged_column(h)].to_numpy()).tolist() for h in windows}
    return entry


def record_text(base: str, inputs: Mapping[str, str], contents: Mapping[str, str], null_hit_rates: Mapping[int, float],
                failed: Sequence[str], entries: Mapping[str, Mapping[str, Any]]) -> str:
    """The record's text, sealed with the digest of its content (read_record checks it): the same
    bytes for the same content (keys sorted)."""
    record = {"format": FORMAT, "base": base, "inputs": dict(sorted(inputs.items())),
              "contents": dict(sorted(contents.items())),
              "null_hit_rates": {str(h): (None if math.isnan(r) else r) for h, r in null_hit_rates.items()},
              "failed": sorted(failed), "detectors": dict(entries)}
    record = json.loads(json.dumps(record))  # as read back, so that the seal is what read_record computes
    return json.dumps({**record, "digest": _sealed(record)}, sort_keys=True) + "\n"
