"""The scan from Python: `from harness import scan`.

    from distributed import Client
    from harness import scan

    client = Client(...)                      # any cluster: LocalCluster, SLURMCluster, KubeCluster...
    result = scan("config.yaml", client=client, out_dir="results", symbols=["AAPL", "MSFT"])
    result.summary                            # summary.csv as a DataFrame
    result.forward("gap")                     # a detector's forward.parquet, read when asked for

scan() does what the CLI does (the CLI is a thin layer over it): it holds the output folder's lock,
writes the same files, byte for byte, and returns them as DataFrames. With a client it runs on that
client's cluster and leaves it open; without one, where the config says (in this process for
workers: 1, else a LocalCluster it starts and closes, or scheduler_address). Progress shows as a
bar (a widget in Jupyter with ipywidgets) and the scan's messages as log lines, without any set-up;
an interrupt (Ctrl-C, a notebook's stop button) stops the run like the CLI's Ctrl-C and raises
harness.errors.Interrupted, the flushed symbols kept for resume=True.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from harness.config import load_config, read_yaml
from harness.detectors import out_name
from harness.errors import ConfigError, Interrupted, RunReplaced, ScanError
from harness.logs import show_messages
from harness.outdir import hold_output_folder
from harness.signals import interrupts_stop_the_run
from harness.stats.summary import format_summary

INTERRUPTED = "interrupted; flushed symbols are kept, run again with resume=True (--resume) to continue"


class _OfTheRun:
    """A ScanResult attribute read from its folder when first asked for, and given only while the
    folder holds the result's run (ScanResult.check_run)."""

    def __init__(self, read: Any):
        self.read, self.name, self.__doc__ = read, read.__name__, read.__doc__

    def __get__(self, result: ScanResult | None, owner: type | None = None) -> Any:
        if result is None:
            return self
        result.check_run()
        read = result.__dict__.setdefault("_read", {})  # a frozen dataclass's own dict, as cached_property's
        if self.name not in read:
            read[self.name] = self.read(result)
        return read[self.name]


@dataclasses.dataclass(frozen=True)
class ScanResult:
    """A finished run's outputs, read from its output folder when first asked for.

    out_dir: the folder; run: run.json (config, symbols, timings, ...); summary, paths, quantiles,
    market: summary.csv, paths.csv, quantiles.csv and market.parquet as DataFrames; events(name)
    and forward(name): a detector's events.parquet and forward.parquet (name as in the config).
    A result is bound to the run the folder holds when it is made (run_id and started, from
    run.json): once a later scan has written another run there, reading it raises RunReplaced
    instead of mixing the two runs' files. ScanResult(out_dir) opens the run the folder holds now.
    """

    out_dir: Path
    run_id: str | None = dataclasses.field(init=False)   # None: a run.json of an older version
    started: str | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        stamp, run = _stamp(self.out_dir), _read_run(self.out_dir)
        if run is None:
            raise ScanError(f"{self.out_dir} holds no finished scan (its run.json is missing or unreadable)")
        object.__setattr__(self, "run_id", run.get("run_id"))
        object.__setattr__(self, "started", run.get("started"))
        self.__dict__.update(_stamp=stamp, _read={"run": run})

    def check_run(self) -> None:
        """RunReplaced unless the folder still holds this result's run (a look at run.json's inode,
        time and size, read again only when they changed)."""
        stamp = _stamp(self.out_dir)
        if stamp is not None and stamp == self.__dict__["_stamp"]:
            return
        run = _read_run(self.out_dir)
        if run is None or (run.get("run_id"), run.get("started")) != (self.run_id, self.started):
            now = ("no finished run (its run.json is missing or unreadable)" if run is None else
                   f"another run (id {run.get('run_id')}, started {run.get('started')})")
            raise RunReplaced(f"{self.out_dir} now holds {now}, not the run this result was read from (id "
                              f"{self.run_id}, started {self.started}); run the scan again, or open the folder "
                              f"again: ScanResult({str(self.out_dir)!r})")
        self.__dict__["_stamp"] = stamp

    @_OfTheRun
    def run(self) -> dict[str, Any]:
        return _read_run(self.out_dir)  # never called: read when the result is made

    @_OfTheRun
    def summary(self) -> pd.DataFrame:
        return _text_columns(pd.read_csv(self.out_dir / "summary.csv"), "baseline", "note")

    @_OfTheRun
    def paths(self) -> pd.DataFrame:
        return pd.read_csv(self.out_dir / "paths.csv")

    @_OfTheRun
    def quantiles(self) -> pd.DataFrame:
        return _text_columns(pd.read_csv(self.out_dir / "quantiles.csv", dtype={"quantile": str}), "note")

    @_OfTheRun
    def market(self) -> pd.DataFrame:
        return pd.read_parquet(self.out_dir / "market.parquet")

    @property
    def detectors(self) -> list[str]:
        return list(self.run["config"]["detectors"])

    def events(self, detector: str) -> pd.DataFrame:
        """The detector's events.parquet: symbol, date, detector, score and its extra columns."""
        return pd.read_parquet(self._folder(detector) / "events.parquet")

    def forward(self, detector: str) -> pd.DataFrame:
        """The detector's forward.parquet: symbol, date, detector, close, fwd_<h>, abn_<h>."""
        return pd.read_parquet(self._folder(detector) / "forward.parquet")

    def _folder(self, detector: str) -> Path:
        if detector not in self.detectors:  # self.run: checks the run first
            raise KeyError(f"{detector!r} did not run; this run's detectors: {', '.join(self.detectors)}")
        return self.out_dir / out_name(detector)

    def __repr__(self) -> str:
        """The summary table; never raises (a notebook shows the repr of old cells' results): a
        result whose folder holds another run says so instead."""
        try:
            return f"ScanResult({str(self.out_dir)!r})\n{format_summary(self.summary)}"
        except (RunReplaced, OSError) as unreadable:  # another run's folder now, or a file removed
            return f"ScanResult({str(self.out_dir)!r}): {unreadable}"

    # Notebook helpers (issue 35); kept together at the end of the class.

    @property
    def report_path(self) -> Path:
        """The run's report.html (RunReplaced once the folder holds another run's)."""
        self.check_run()
        return self.out_dir / "report.html"

    def frame(self, detector: str) -> pd.DataFrame:
        """The detector's events joined with their forward and abnormal returns on (symbol, date): one
        row per event, its score and extra columns kept, then close, fwd_<h>, abn_<h>."""
        events, forward = self.events(detector), self.forward(detector)
        return events.merge(forward.drop(columns="detector"), on=["symbol", "date"], how="left",
                            validate="one_to_one", sort=False)

    def _repr_html_(self) -> str:
        """For Jupyter: the report's findings (per variant, does it beat its baseline: at which
        horizons, the difference with its interval and p; without variants, each detector's starred
        horizons), then per detector and window the events, the abnormal mean (%), its t and a star
        as summary.csv's abn_significant has it (as on the terminal)."""
        import html
        from harness.report import findings
        try:
            table = self.summary
        except (RunReplaced, OSError) as unreadable:  # Jupyter shows old cells again: a line, no traceback
            return f"<p>{html.escape(repr(self))}</p>" if isinstance(unreadable, RunReplaced) else \
                f"<p>ScanResult {html.escape(str(self.out_dir))}: {html.escape(str(unreadable))}</p>"
        shown = pd.DataFrame({
            "detector": table["detector"], "window": table["window"], "events": table["events"],
            "abn_mean": table["abn_mean"].map(lambda v: "" if pd.isna(v) else f"{100 * v:+.2f}%"),
            "abn_t": table["abn_t"].map(lambda t: "-" if pd.isna(t) else f"{t:.2f}"),
            "stars": ["*" if starred else "" for starred in table["abn_significant"].astype(bool)]})
        return (f"<p>ScanResult {html.escape(str(self.out_dir))} (report: {html.escape(str(self.report_path))})</p>"
                + findings(table) + shown.to_html(index=False, escape=True))


def _stamp(out_dir: Path) -> tuple[int, int, int] | None:
    """run.json's inode, modification time and size (None without one): a run replaces the file."""
    try:
        found = (out_dir / "run.json").stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def _read_run(out_dir: Path) -> dict[str, Any] | None:
    """run.json's content; None when it is missing or unreadable."""
    try:
        run = json.loads((out_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def _text_columns(table: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """`columns` as text, "" where the CSV cell was empty (read_csv makes an all-empty one NaN floats)."""
    for column in columns:
        table[column] = table[column].astype(object).where(table[column].notna(), "").astype(str)
    return table


def scan(config: str | os.PathLike | Mapping[str, Any] | None = None, client: Any = None, *,
         resume: bool = False, progress: bool = True, **overrides: Any) -> ScanResult:
    """Run the scan and return its outputs.

    config: a YAML file (its keys as config.yaml documents them), a mapping of the same keys, or
    None for the defaults. overrides: config keys that replace the file's (out_dir="x", workers=2,
    symbols=["A", "B"], detectors=[...], ...). Relative paths are relative to the current folder.
    client: a distributed.Client to run on, whatever made it; never closed here (`workers` and
    `scheduler_address` are then ignored). resume: continue the unfinished run in out_dir (the
    CLI's --resume). progress: show the progress bar (or log lines where no bar can show).
    Raises harness.errors.ScanError subclasses with the CLI's one-line messages: ConfigError for a
    config mistake or a wrong argument (a client that is not a running distributed.Client),
    Interrupted after an interrupt, SymbolFailed naming the symbol and detector.
    """
    from harness.run import run_scan  # the driver and its imports, only once a scan starts

    _check_flags(resume=resume, progress=progress)
    client = _checked_client(client)
    show_messages()
    raw = _config_keys(config)
    # An override replaces the file's value, None included (market_outlier_move=None: no guard);
    # tuples are lists, as YAML would give them.
    raw.update({key: list(value) if isinstance(value, tuple) else value for key, value in overrides.items()})
    cfg = load_config(raw)
    try:
        with hold_output_folder(cfg.out_dir), interrupts_stop_the_run():
            run_scan(cfg, resume=resume, client=client, console=False, progress=progress)
    except KeyboardInterrupt:  # StopRequested (a signal) is one too
        raise Interrupted(INTERRUPTED) from None
    return ScanResult(Path(cfg.out_dir))


def _config_keys(config: Any) -> dict[str, Any]:
    """scan()'s `config` as a dict of config keys: a YAML file's, a mapping's, or none for None."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, (str, os.PathLike)):
        return read_yaml(config)
    raise ConfigError(f"scan(): config must be the path of a YAML file, a mapping of config keys or None; "
                      f"got {_shown(config)}")


def _check_flags(**flags: Any) -> None:
    """ConfigError for a flag of scan() (resume, progress) that is not True or False: "no" is true."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"scan(): {name} must be True or False; got {_shown(value)}")


def _checked_client(client: Any) -> Any:
    """scan()'s `client`: None, or a distributed.Client that is running; else a ConfigError that says
    what to pass (a scheduler's address is scheduler_address=, not client=)."""
    if client is None:
        return None
    from distributed import Client
    if isinstance(client, (str, os.PathLike)):
        raise ConfigError(f"scan(): client must be a distributed.Client; got {_shown(client)}: for a scheduler's "
                          f"address pass scheduler_address={str(client)!r}")
    if not isinstance(client, Client):
        raise ConfigError(f"scan(): client must be a distributed.Client; got {_shown(client)}")
    if client.status != "running":
        raise ConfigError(f"scan(): the Dask client is {client.status}, not running; pass an open Client, or "
                          "none to let the scan start its own cluster")
    return client


def _shown(value: Any) -> str:
    """A wrong argument in a message: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
