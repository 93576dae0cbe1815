"""Parse config.yaml plus CLI overrides, once, into a frozen ScanConfig; every mistake is a ConfigError.

Every key is documented in config.yaml. Validation here covers everything that can be checked
without starting a process: key names, types, ranges, symbol names, that the data path exists and
that every detector name resolves.

Local paths (ohlcv_path, out_dir, the security files, the config file itself) expand a leading
`~` or `~user` as a shell would: a flag like `--out=~/x` or a YAML value reaches us unexpanded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import itertools
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness.stats.benchmark import (BENCHMARKS, DEFAULT_ESTIMATION_WINDOW, DEFAULT_MIN_ESTIMATION_BARS,
                               DEFAULT_MIN_MARKET_SYMBOLS, DEFAULT_OUTLIER_MOVE, Benchmark)
from harness.errors import ConfigError
from harness.redact import redact, redact_options

MAX_WORKERS = 12
LOOKAHEAD_CHECKS = ("fail", "warn", "off")
DEFAULT_WINDOWS = (5, 10, 20, 40)
DEFAULT_PATH_OFFSETS = (-20, 40)
MAX_PATH_OFFSET = 250
MAX_ESTIMATION_BAR = 2_000  # bars before the event (about 8 years)
MAX_WINDOW = 10_000  # bars (~40 years of trading days); far beyond any symbol's history
DEFAULT_DATA = "data/ohlcv"
# Bars are datetime64[ns]: dates outside these bounds cannot be represented (pandas.Timestamp.min/max).
EARLIEST_DATE, LATEST_DATE = dt.date(1677, 9, 22), dt.date(2262, 4, 11)
_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})")
# Integers YAML 1.1 reads other than as the decimal a reader sees: 010 is octal 8 and 1:30 is
# base-60 90 (`forward_windows: [05, 010, 020]` was [5, 8, 16]). The loader keeps them as text, so
# the key's own check reports them as written.
_SURPRISING_INT = re.compile(r"[-+]?(?:0[0-7_]+|[1-9][0-9_]*(?::[0-5]?[0-9])+)")


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """One run's settings. Built only by load_config; never mutated afterwards."""

    ohlcv_path: str = DEFAULT_DATA
    out_dir: str = "results"
    lookback_days: int = 7305
    end_date: dt.date | None = None
    symbols: tuple[str, ...] | None = None
    detectors: tuple[str, ...] = ()
    params: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    forward_windows: tuple[int, ...] = DEFAULT_WINDOWS
    path_offsets: tuple[int, int] = DEFAULT_PATH_OFFSETS
    flush_every: int = 50
    workers: int = 8
    symbols_per_task: int | None = None  # None: "auto", sized by cluster.plan from the measured cost
    scheduler_address: str | None = None
    dashboard_address: str = "127.0.0.1:8787"
    on_error: str = "fail"
    security: Mapping[str, str] | None = None
    ship_code: bool = False
    allow_version_mismatch: bool = False
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    benchmark: str = "market"
    estimation_window: tuple[int, int] = DEFAULT_ESTIMATION_WINDOW
    min_estimation_bars: int = DEFAULT_MIN_ESTIMATION_BARS
    min_market_symbols: int = DEFAULT_MIN_MARKET_SYMBOLS
    market_outlier_move: float | None = DEFAULT_OUTLIER_MOVE
    exclude_flagged: bool = False
    # The detectors given as a mapping (_detector_entries): name -> {"detector", "baseline"}. Not a
    # config key of its own; the entries' params are in `params`, their grid points in `detectors`.
    detector_entries: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    lookahead_check: str = "fail"
    reuse: bool = True  # keep an earlier run's unchanged detectors (harness.reuse)

    def benchmark_settings(self) -> Benchmark:
        """The benchmark keys as harness.stats.benchmark takes them."""
        return Benchmark(self.benchmark, self.estimation_window, self.min_estimation_bars, self.min_market_symbols,
                         self.market_outlier_move, self.exclude_flagged)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly copy, for run.json."""
        out = dataclasses.asdict(self)
        out["end_date"] = self.end_date.isoformat() if self.end_date else None
        for key in ("symbols", "detectors", "forward_windows", "path_offsets", "estimation_window"):
            out[key] = list(out[key]) if out[key] is not None else None
        out["params"] = {k: dict(v) for k, v in self.params.items()}
        out["symbols_per_task"] = self.symbols_per_task or "auto"
        # run.json is shared with others, and the report with it: no credentials in them
        out["ohlcv_path"] = redact(self.ohlcv_path)
        out["scheduler_address"] = redact(self.scheduler_address) if self.scheduler_address else None
        out["storage_options"] = redact_options(self.storage_options)
        if not self.detector_entries:  # a config of plain names: run.json and the fingerprint as before
            del out["detector_entries"]
        return out

    def detector_sources(self) -> tuple[str, ...]:
        """The registered name or import path each of `detectors` runs."""
        return tuple(self.detector_entries.get(name, {}).get("detector", name) for name in self.detectors)


KEYS = tuple(f.name for f in dataclasses.fields(ScanConfig) if f.name != "detector_entries")
SECURITY_KEYS = ("ca_file", "cert", "key")
# Options of pyarrow.fs.S3FileSystem that the config may set; credentials can also come from the
# usual AWS_* environment variables, which is the better place for them.
STORAGE_OPTIONS = ("endpoint_override", "scheme", "region", "access_key", "secret_key", "session_token",
                   "anonymous", "allow_bucket_creation")


def _fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {problem}")


def _given(value: Any) -> str:
    """`value` for a message, with a hint when it is an integer YAML would not read as decimal."""
    if isinstance(value, str) and _SURPRISING_INT.fullmatch(value):
        return (f"{value!r} (YAML 1.1 reads a leading 0 as octal and a:b as base 60; write the number in "
                "plain decimal)")
    return repr(value)


def _int(key: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, f"must be an integer, got {_given(value)}")
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _fail(key, f"must be {allowed}, got {value}")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(key, f"must be a non-empty string, got {value!r}")
    return value


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(key, f"must be {' or '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def _optional_str(key: str, value: Any) -> str | None:
    return None if value is None else _str(key, value)


def _date(key: str, value: Any) -> dt.date | None:
    if value is None:
        return None
    date = value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            date = dt.date.fromisoformat(value)
    if date is None:
        raise _fail(key, f"must be a date like 2024-12-31, got {value!r}")
    if not EARLIEST_DATE <= date <= LATEST_DATE:
        raise _fail(key, f"must be between {EARLIEST_DATE} and {LATEST_DATE} (what a nanosecond timestamp "
                    f"can hold), got {date}")
    return date


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, f"must be a list of names, got {value!r}")
    return tuple(value)


def _windows(key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(key, f"must be a non-empty list of positive integers, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_WINDOW:
            raise _fail(key, f"windows must be integers from 1 to {MAX_WINDOW} (bars), got {_given(v)}")
    if len(set(value)) != len(value):
        raise _fail(key, f"windows must not repeat, got {value!r}")
    return tuple(sorted(value))


def _path_offsets(key: str, value: Any) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or not -MAX_PATH_OFFSET <= value[0] <= 0 <= value[1] <= MAX_PATH_OFFSET):
        raise _fail(key, f"must be [first, last] bars around the event with -{MAX_PATH_OFFSET} <= first <= 0 "
                    f"<= last <= {MAX_PATH_OFFSET}, e.g. [-20, 40]; got {value!r}")
    return value[0], value[1]


def _outlier_move(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= value <= 1000:
        raise _fail(key, f"must be a number from 0.05 to 1000 (0.8: a day above +80% or below -44% is an outlier), "
                    f"or null for no guard; got {value!r}")
    return float(value)


def _estimation_window(key: str, value: Any) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or not -MAX_ESTIMATION_BAR <= value[0] < value[1] <= -1):
        raise _fail(key, f"must be [first, last] bars before the event with -{MAX_ESTIMATION_BAR} <= first < last "
                    f"<= -1, e.g. [-250, -21]; got {value!r}")
    return value[0], value[1]


def _params(key: str, value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _fail(key, "must map a detector name to a mapping of parameter: value")
    for name, given in value.items():
        for param in given:
            if not isinstance(param, str):
                raise _fail(f"{key}.{name}", f"parameter names must be text, got {param!r}")
    return {str(name): dict(p) for name, p in value.items()}


_ENTRY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
ENTRY_KEYS = ("name", "detector", "params", "baseline", "grid")


def yaml_text(value: Any) -> str:
    """`value` as YAML writes it in a flow list (2.0, true, 1.0e-05, text)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1_000_000).strip()[1:-1]


def _grid_points(key: str, grid: Any) -> list[tuple[str, dict[str, Any]]]:
    """(suffix `[k=v,...]`, parameters) of every point of `grid`, {key: [values...]}: the product
    of the keys in the order written, the first key varying slowest."""
    if not isinstance(grid, dict) or not grid:
        raise _fail(key, f"must map parameter names to lists of values, e.g. {{multiple: [2.0, 3.0]}}; got {grid!r}")
    for param, values in grid.items():
        if not isinstance(param, str):
            raise _fail(key, f"parameter names must be text, got {param!r}")
        if type(values).__module__ == "numpy" and getattr(values, "ndim", 0) == 1:  # a notebook's np.linspace
            values = values.tolist()
        if not isinstance(values, list) or not values:
            raise _fail(f"{key}.{param}", f"must be a non-empty list of values, got {values!r}")
        # numpy's numbers (a notebook's np.arange) as Python's, which YAML can write in a name
        plain = [v.item() if type(v).__module__ == "numpy" and hasattr(v, "item") else v for v in values]
        if any(not isinstance(v, (bool, int, float, str)) for v in plain):
            raise _fail(f"{key}.{param}", f"values must be numbers, true/false or text, got {values!r}")
        if len({(isinstance(v, bool), v) for v in plain}) != len(plain):
            raise _fail(f"{key}.{param}", f"values must not repeat (2 and 2.0 are one value), got {values!r}")
        grid = {**grid, param: plain}
    points = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo))
        points.append(("[" + ",".join(f"{k}={yaml_text(v)}" for k, v in point.items()) + "]", point))
    return points


def _detector_entries(key: str, value: Any) -> tuple[tuple[str, ...], dict[str, dict[str, Any]],
                                                     dict[str, dict[str, Any]], dict[str, tuple[str, ...]]]:
    """(names, entries, params, gridded) of the `detectors` key: a list of names (or one
    comma-separated text) and of mappings {name, detector, params, baseline, grid}. A mapping's
    detector defaults to its name; each point of its grid is a detector of its own,
    `<name>[k=v,...]`. entries: name -> {"detector", "baseline"} of the mappings' detectors;
    params: their parameters; gridded: a grid point's name -> the keys its name fixes."""
    if not isinstance(value, list) or not any(isinstance(item, dict) for item in value):
        return _str_list(key, value), {}, {}, {}
    names, entries, params, gridded = [], {}, {}, {}
    for item in value:
        if isinstance(item, str) and item:
            names.append(item)
            continue
        if not isinstance(item, dict):
            raise _fail(key, f"each item must be a detector name or a mapping {{name, detector, params, baseline, "
                        f"grid}}, got {item!r}")
        unknown = [str(k) for k in item if k not in ENTRY_KEYS]
        if unknown:
            raise _fail(key, f"unknown key(s) {', '.join(unknown)} in {item!r}; allowed: {', '.join(ENTRY_KEYS)}")
        name = item.get("name")
        if not isinstance(name, str) or not _ENTRY_NAME.fullmatch(name):
            raise _fail(key, f"each mapping needs a name of letters, digits, '.', '_' and '-' (not starting "
                        f"with '.' or '-'), got {name!r} in {item!r}")
        where = f"{key}.{name}"
        detector = _str(f"{where}.detector", item.get("detector", name))
        baseline = _optional_str(f"{where}.baseline", item.get("baseline"))
        own = item.get("params") or {}
        if not isinstance(own, dict) or not all(isinstance(param, str) for param in own):
            raise _fail(f"{where}.params", f"must map parameter names to values, got {own!r}")
        points = [("", {})] if item.get("grid") is None else _grid_points(f"{where}.grid", item["grid"])
        both = sorted(set(own) & set(points[0][1]))
        if both:
            raise _fail(where, f"{', '.join(both)} is in both params and grid; keep one")
        for suffix, point in points:
            names.append(name + suffix)
            entries[name + suffix] = {"detector": detector, "baseline": baseline}
            params[name + suffix] = {**own, **point}
            gridded[name + suffix] = tuple(point)
    return tuple(names), entries, params, gridded


def params_json(flag: str, text: str | None) -> dict[str, Any] | None:
    """The JSON object of a flag like --params; ConfigError naming the flag when it is not one."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: not valid JSON ({exc}); e.g. {flag} '{{\"volume_spike\": {{\"multiple\": 4}}}}'"
                          ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag}: must be a JSON object of detector name: {{parameter: value}}, got {text!r}")
    return value


def _per_task(key: str, value: Any) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, str) and value.isdigit():  # from a CLI flag
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise _fail(key, f"must be auto or an integer between 1 and 10000, got {value!r}")
    return value


def _address(key: str, value: Any) -> str:
    match = _ADDRESS.fullmatch(_str(key, value))
    if not match or int(match["port"]) > 65535:
        raise _fail(key, f"must be host:port with a port from 0 to 65535 (0 = any free port), "
                    f"e.g. 127.0.0.1:8787, got {value!r}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {value!r}")
    return value


def _expand_home(key: str, value: str) -> str:
    """`value` with a leading `~` or `~user` replaced by that home folder, as a shell does; other
    values unchanged. A `~user` that names no user is a ConfigError: left as it is, it would be a
    folder literally named '~user' in the current directory (and an `rm -rf ~...` waiting to happen)."""
    if not value.startswith("~"):
        return value
    expanded = os.path.expanduser(value)
    if expanded.startswith("~"):
        user = value.split("/", 1)[0]
        raise _fail(key, f"cannot expand {user!r} in {value!r}: no such user (write the folder out in full, "
                    f"or ./{value} for a folder named {user!r})")
    return expanded


def _security(key: str, value: Any, base_dir: str | os.PathLike) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(SECURITY_KEYS):
        raise _fail(key, f"must set exactly {', '.join(SECURITY_KEYS)} (paths to the CA, client certificate "
                    f"and key in PEM), got {value!r}")
    paths = {}
    for name in SECURITY_KEYS:
        path = Path(base_dir) / _expand_home(f"{key}.{name}", _str(f"{key}.{name}", value[name]))
        if not path.is_file():
            raise _fail(f"{key}.{name}", f"file {str(path)!r} does not exist")
        paths[name] = str(path.resolve())
    return paths


def _storage_options(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(key, "must be a mapping of S3 options")
    unknown = sorted(set(value) - set(STORAGE_OPTIONS))
    if unknown:
        raise _fail(key, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(STORAGE_OPTIONS)}")
    return dict(value)


def _local_path(key: str, value: str, base_dir: str | os.PathLike) -> Path:
    """`value` (`~` expanded, then relative to base_dir) as an absolute path, symlinks resolved; a
    ConfigError when the operating system cannot use it: a name too long, a NUL byte, a symlink
    loop, a folder on the way that may not be entered."""
    value = _expand_home(key, value)
    try:
        path = (Path(base_dir) / value).resolve()
        path.exists()  # raises for what resolve() lets through (a long name, a folder not to enter)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split(":")[0]
        raise _fail(key, f"{value!r} is not a usable path ({reason})") from None
    return path


def _file_url_as_path(value: str) -> str:
    """A file:// URL as the local path it names (read like any local folder, and checked like one)."""
    if not value.startswith("file://"):
        return value
    parsed = urllib.parse.urlparse(value)
    return urllib.parse.unquote(parsed.path) if parsed.netloc in ("", "localhost") else value


def scheduler_host_port(address: str) -> tuple[str, int]:
    """The host and port of a tcp:// or tls:// scheduler_address; ConfigError naming the key if it
    has no host or no valid port (distributed would raise a bare ValueError, or a traceback, later)."""
    scheme, sep, rest = address.partition("://")
    problem = None
    if not sep or scheme not in ("tcp", "tls"):
        problem = "the scheme must be tcp:// or tls://"
    elif rest.startswith("["):  # IPv6: [::1]:8786
        host, bracket, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else None
        if not bracket or tail and port is None:
            problem = "an IPv6 host must be in brackets, [::1]:8786"
    else:
        host, colon, port = rest.rpartition(":")
        if not colon:
            host, port = rest, None
        elif ":" in host:
            problem = "an IPv6 host must be in brackets, [::1]:8786"
    if problem is None:
        if not host:
            problem = "the host is missing"
        elif not port:
            problem = "the port number is missing"
        elif not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            problem = f"the port {port!r} is not a number from 1 to 65535"
    if problem:
        raise _fail("scheduler_address", f"{problem}; expected tcp://host:port (e.g. tcp://127.0.0.1:8786), "
                    f"got {address!r}")
    return host, int(port)


def _out_dir(key: str, value: Any, ohlcv_path: str, base_dir: str | os.PathLike) -> str:
    """The output folder, absolute. Refused: a URL, a file (or a path through one), the file-system
    root, the dataset root or a folder inside it, and a folder that holds the dataset root (both
    ways the scan would write among its inputs: `--out out --data out/gap` puts the detector
    `gap`'s files in the data). Both paths are resolved, so symlinks cannot hide either case."""
    from harness.io import is_url

    out_dir = _str(key, value)
    if is_url(out_dir):
        raise _fail(key, f"must be a local folder, got {out_dir!r} (outputs are written by the driver)")
    path = _local_path(key, out_dir, base_dir)
    if path == Path(path.anchor):
        raise _fail(key, f"{str(path)!r} is the file-system root; give the results a folder of their own")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        through = "" if existing == path else f", so {str(path)!r} cannot be a folder"
        raise _fail(key, f"{str(existing)!r} is a file{through}; give a folder (it is created if missing)")
    if not is_url(ohlcv_path) and path.is_relative_to(ohlcv_path):
        raise _fail(key, f"{str(path)!r} is the dataset root 'ohlcv_path' or inside it; write the results elsewhere")
    if not is_url(ohlcv_path) and Path(ohlcv_path).is_relative_to(path):
        raise _fail(key, f"{str(path)!r} holds the dataset root 'ohlcv_path' ({ohlcv_path!r}), and the scan would "
                    "write its folders among the data; write the results elsewhere")
    return str(path)


class _KeyTwice(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark):
        super().__init__(problem=f"key {key!r}", problem_mark=again)
        self.lines = (first.line + 1, again.line + 1)


_STR_TAG, _NULL_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"
# The keys whose values are text, read as written (a nested dict: the keys of a mapping under it).
# YAML 1.1 would make the tickers ON and NO booleans, 0700 the octal integer 448, 1_000 the integer
# 1000 and 1.50 the float 1.5, and an out_dir of 2024 an integer.
TEXT_KEYS: dict[str, Any] = {
    "symbols": None, "detectors": None, "ohlcv_path": None, "out_dir": None, "scheduler_address": None,
    "dashboard_address": None, "on_error": None, "benchmark": None, "lookahead_check": None,
    "security": {name: None for name in SECURITY_KEYS},
}


_ENTRY_TEXT_KEYS: dict[str, Any] = {"name": None, "detector": None, "baseline": None}  # `name: on` is 'on'


def _keep_text(mapping: yaml.MappingNode, keys: Mapping[str, Any]) -> None:
    """Before construction: tag the plain scalars under `keys` of `mapping` as text, so that they
    are constructed from their text as written. A list's items are all text (`[null]` is the name
    'null'), and so are the names of a mapping in it (a detector entry's name, detector and
    baseline); a key's own value stays null when it is `null`, `~` or empty (that means "not set").
    Quoted scalars are text already; anything else (a mapping where a list belongs) is left to the
    key's own check."""
    for key_node, value_node in mapping.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value not in keys:
            continue
        nested = keys[key_node.value]
        if nested is not None:
            if isinstance(value_node, yaml.MappingNode):
                _keep_text(value_node, nested)
        elif isinstance(value_node, yaml.SequenceNode):
            for item in value_node.value:
                if isinstance(item, yaml.ScalarNode) and item.style is None:
                    item.tag = _STR_TAG
                elif isinstance(item, yaml.MappingNode):  # a detector entry: its names are text too
                    _keep_text(item, _ENTRY_TEXT_KEYS)
        elif isinstance(value_node, yaml.ScalarNode) and value_node.style is None and value_node.tag != _NULL_TAG:
            value_node.tag = _STR_TAG


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader, except that a date-like scalar that is no real date (2024-02-30) stays text,
    so that the key's own check reports it with the key's name (so does an octal or base-60 integer,
    010 or 1:30, which YAML 1.1 reads as 8 and 90); that a key given twice in one
    mapping is an error (YAML's loaders keep the last silently: a second `detectors:` lower down
    would quietly replace the first); and that the values of TEXT_KEYS are read as written (YAML
    1.1 reads `symbols: [ON, NO, 0700]` as [True, False, 448])."""

    def construct_document(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):  # only the top level holds config keys
            _keep_text(node, TEXT_KEYS)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # an unhashable key: the base class reports it
                if key in seen:
                    raise _KeyTwice(key, seen[key], key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def _timestamp_or_text(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)


def _int_or_text(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """An integer, except octal (010) and base-60 (1:30) ones, which stay text (_SURPRISING_INT)."""
    if _SURPRISING_INT.fullmatch(node.value):
        return loader.construct_scalar(node)
    return loader.construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)
_Loader.add_constructor("tag:yaml.org,2002:int", _int_or_text)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a UTF-8 config file safely (no Python tags); an empty file is an empty mapping. A
    leading `~` of `path` is expanded (`--config=~/scan.yaml` reaches us unexpanded)."""
    if isinstance(path, str) and path.startswith("~"):
        expanded = os.path.expanduser(path)
        if expanded.startswith("~"):
            raise ConfigError(f"cannot read config file {path!r}: no such user {path.split('/', 1)[0]!r}")
        path = expanded
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}); "
                          "save it as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)
    except _KeyTwice as exc:
        raise ConfigError(f"config file {str(path)!r} sets {exc.problem} twice (lines {exc.lines[0]} and "
                          f"{exc.lines[1]}); keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must be a mapping of key: value")
    return raw


def load_config(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                base_dir: str | os.PathLike = ".") -> ScanConfig:
    """Validate the YAML mapping `raw`, apply `overrides` (CLI flags, None = not given), return ScanConfig.

    Relative local paths are resolved against `base_dir` (the config file's folder is the caller's
    choice; the CLI passes the current directory so that paths behave like any shell path).
    """
    from harness.detectors import REGISTERED, resolve_detectors  # late: detectors import baseline code
    from harness.io import is_url, validate_symbol_name

    merged = dict(raw)
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
    for key in merged:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}; allowed keys: {', '.join(KEYS)}")

    ohlcv_path = _file_url_as_path(_str("ohlcv_path", merged.get("ohlcv_path", DEFAULT_DATA)))
    if not is_url(ohlcv_path):
        ohlcv_path = str(_local_path("ohlcv_path", ohlcv_path, base_dir))
        if Path(ohlcv_path).is_file():
            raise _fail("ohlcv_path", f"{ohlcv_path!r} is a file; give the folder that holds the "
                        "symbol=XXX/ folders")
        if not Path(ohlcv_path).is_dir():
            raise _fail("ohlcv_path", f"data folder {ohlcv_path!r} does not exist "
                        "(run `make data` to generate the sample universe, or pass --data PATH)")

    out_dir = _out_dir("out_dir", merged.get("out_dir", "results"), ohlcv_path, base_dir)

    symbols = merged.get("symbols")
    if symbols is not None:
        symbols = _str_list("symbols", symbols)
        if not symbols:
            raise _fail("symbols", "is empty; leave it out to scan every symbol")
        for s in symbols:
            try:
                validate_symbol_name(s)
            except Exception as exc:
                raise _fail("symbols", str(exc)) from None
        symbols = tuple(sorted(set(symbols)))

    detectors, entries, entry_params, gridded = ((REGISTERED, {}, {}, {}) if merged.get("detectors") is None
                                                 else _detector_entries("detectors", merged["detectors"]))
    if not detectors:
        raise _fail("detectors", "must list at least one detector name (leave it out to run every registered one)")
    repeated = [name for name in dict.fromkeys(detectors) if detectors.count(name) > 1]
    if repeated:
        raise _fail("detectors", f"names must not repeat: {', '.join(repr(n) for n in repeated)} is given more "
                    f"than once (to run one detector with other parameters, give it a name of its own: "
                    f"- {{name: ..., detector: ..., params: ...}})")
    params = _params("params", merged.get("params"))
    for name, keys in gridded.items():  # a grid point's name says its values: `params` may not change them
        fixed = sorted(set(keys) & set(params.get(name, {})))
        if fixed:
            raise _fail(f"params.{name}", f"{', '.join(fixed)} is fixed by the grid point's name; change the grid")
    for name, own in entry_params.items():  # the `params` key (and --params) over an entry's own
        if own:
            params[name] = {**own, **params.get(name, {})}

    on_error = _choice("on_error", merged.get("on_error", "fail"), ("fail", "skip"))
    estimation_window = _estimation_window("estimation_window",
                                           merged.get("estimation_window", list(DEFAULT_ESTIMATION_WINDOW)))

    scheduler_address = _optional_str("scheduler_address", merged.get("scheduler_address"))
    if scheduler_address:
        scheduler_host_port(scheduler_address)
    security = _security("security", merged.get("security"), base_dir)
    if scheduler_address and scheduler_address.startswith("tls://") and security is None:
        raise _fail("security", "a tls:// scheduler_address needs security: {ca_file, cert, key}")

    cfg = ScanConfig(
        ohlcv_path=ohlcv_path,
        out_dir=out_dir,
        lookback_days=_int("lookback_days", merged.get("lookback_days", 7305), 1),
        end_date=_date("end_date", merged.get("end_date")),
        symbols=symbols,
        detectors=detectors,
        params=params,
        forward_windows=_windows("forward_windows", merged.get("forward_windows", list(DEFAULT_WINDOWS))),
        path_offsets=_path_offsets("path_offsets", merged.get("path_offsets", list(DEFAULT_PATH_OFFSETS))),
        flush_every=_int("flush_every", merged.get("flush_every", 50), 1),
        workers=_int("workers", merged.get("workers", 8), 1, MAX_WORKERS),
        symbols_per_task=_per_task("symbols_per_task", merged.get("symbols_per_task", "auto")),
        scheduler_address=scheduler_address,
        dashboard_address=_address("dashboard_address", merged.get("dashboard_address", "127.0.0.1:8787")),
        on_error=on_error,
        security=security,
        ship_code=_bool("ship_code", merged.get("ship_code", False)),
        allow_version_mismatch=_bool("allow_version_mismatch", merged.get("allow_version_mismatch", False)),
        storage_options=_storage_options("storage_options", merged.get("storage_options")),
        benchmark=_choice("benchmark", merged.get("benchmark", "market"), BENCHMARKS),
        estimation_window=estimation_window,
        min_estimation_bars=_int("min_estimation_bars", merged.get("min_estimation_bars", DEFAULT_MIN_ESTIMATION_BARS),
                                 2, estimation_window[1] - estimation_window[0] + 1),
        min_market_symbols=_int("min_market_symbols", merged.get("min_market_symbols", DEFAULT_MIN_MARKET_SYMBOLS), 1),
        market_outlier_move=_outlier_move("market_outlier_move", merged.get("market_outlier_move", DEFAULT_OUTLIER_MOVE)),
        exclude_flagged=_bool("exclude_flagged", merged.get("exclude_flagged", False)),
        detector_entries=entries,
        lookahead_check=_choice("lookahead_check", merged.get("lookahead_check", "fail"), LOOKAHEAD_CHECKS),
        reuse=_bool("reuse", merged.get("reuse", True)),
    )
    resolve_detectors(cfg.detectors, cfg.params, cfg.detector_entries)  # raises ConfigError on an unknown name or parameter
    return cfg
