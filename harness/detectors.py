"""The detector registry: config names -> functions, parameters and the baseline each variant varies.

A name is either registered here (the baselines and harness.variants) or an import path
`package.module:function` to a user's detector. A user detector may carry two optional attributes:
`defaults` (a dict of parameters) and `baseline` (the name of the detector it varies). A config
entry may also run one of those under a name of its own (harness.config: `name` and `detector`),
so that one function runs with several parameter sets.

A user's detector is imported afresh (import_fresh): a process that scans twice (a notebook) runs
the code on disk at each scan, not the code it imported for the first, and that is the code whose
digest run.json and --resume record (harness.fingerprint).

Parameters are checked before anything runs: each against its default's type (int, float, bool,
str; an int may stand for a float, a bool never for a number) and, for the registered detectors,
against the range in PARAM_RULES (baseline/ is frozen, so the ranges live here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import math
import os
import re
import sys
import threading
import weakref
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

import baseline
from harness import variants
from harness.errors import ConfigError, ScanError
from harness.fingerprint import code_roots, digest, is_users_code, module_source
from harness.outdir import RESERVED_NAMES

Detector = Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame]

BASELINES: dict[str, Detector] = {
    "volume_spike": baseline.volume_spike,
    "breakout_52w": baseline.breakout_52w,
    "gap": baseline.gap,
    "rsi_oversold": baseline.rsi_oversold,
    "squeeze_breakout": baseline.squeeze_breakout,
    "ma_cross": baseline.ma_cross,
}
VARIANT_FUNCTIONS: dict[str, Detector] = {name: getattr(variants, name) for name in variants.VARIANTS}
# Each baseline followed by its variants: the default `detectors` (config.yaml lists them so too).
REGISTERED = tuple(name for base in BASELINES
                   for name in (base, *(v for v, varied in variants.VARIANTS.items() if varied == base)))
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
MAX_BARS = 10_000  # upper bound of every window-like parameter (~40 years of trading days)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The values a numeric parameter may take: from `low` (excluded when `low_open`) to `high`."""

    low: float
    high: float = math.inf
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high

    def __str__(self) -> str:
        low = f"> {self.low}" if self.low_open else f">= {self.low}"
        return low if self.high == math.inf else f"{low} and <= {self.high}"


BARS = Bounds(1, MAX_BARS)
POSITIVE = Bounds(0, low_open=True)
_BASELINE_RULES: dict[str, dict[str, Bounds]] = {
    "volume_spike": {"window": BARS, "multiple": POSITIVE, "min_move": Bounds(0)},
    "breakout_52w": {"lookback": BARS, "cooldown": Bounds(0, MAX_BARS)},
    "gap": {"min_gap": POSITIVE},
    "rsi_oversold": {"period": BARS, "level": Bounds(0, 100)},
    "squeeze_breakout": {"window": Bounds(2, MAX_BARS), "rank_window": BARS, "quantile": Bounds(0, 1),
                         "horizon": BARS},
    "ma_cross": {"fast": BARS, "slow": BARS},
}
# The allowed range of every parameter of every registered detector (tests check that none is missing).
PARAM_RULES: dict[str, dict[str, Bounds]] = {
    **_BASELINE_RULES,
    "volume_spike_trend": {**_BASELINE_RULES["volume_spike"], "trend_window": BARS},
    "breakout_52w_volume": {**_BASELINE_RULES["breakout_52w"], "volume_window": BARS, "volume_multiple": POSITIVE},
    "rsi_oversold_fast": _BASELINE_RULES["rsi_oversold"],
}

# Parameters of one detector that must be in increasing order: ma_cross with fast >= slow ran,
# as a cross of the slow average over the fast one (or with no event at all when equal).
ORDERED_PARAMS: dict[str, tuple[str, str]] = {"ma_cross": ("fast", "slow")}


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """One detector of a run: its config name, function, parameters, and the baseline it varies."""

    name: str
    func: Detector
    params: dict[str, Any]
    baseline: str | None = None
    detector: str | None = None  # the registered name or import path it runs, when not `name` itself

    @property
    def out_name(self) -> str:
        return out_name(self.name)

    @property
    def source(self) -> str:
        """The registered name or import path of the function this detector runs."""
        return self.detector or self.name

    @property
    def is_users(self) -> bool:
        """A user's detector (an import path), not one of harness.detectors' registered ones."""
        return bool(_IMPORT_PATH.fullmatch(self.source))

    def __reduce__(self) -> tuple:
        # A user's detector travels to a worker as its import path and is imported there by
        # _spec_on_worker: a module that fails to import on the worker then fails the symbol,
        # naming the detector. Pickled by reference, the failure would be in the worker's message
        # stream, where Dask logs it and the task is never run: the driver would wait forever.
        if self.is_users:
            return _spec_on_worker, (self.name, self.params, self.baseline, self.detector)
        return DetectorSpec, (self.name, self.func, self.params, self.baseline, self.detector)


_FOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def out_name(name: str) -> str:
    """A detector's folder under out_dir: its name in the charset of a symbol's folder
    (letters, digits, '.', '_', '-'). An import path's ':' becomes '.' (`pkg.mod:f` -> `pkg.mod.f`);
    a grid point's `[k=v,...]` becomes `.k_v...` (`vs_grid[multiple=2.0,window=10]` ->
    `vs_grid.multiple_2.0.window_10`); a '+' is dropped (`1.0e+20` -> `1.0e20`) and any other
    character outside the charset becomes '_'. Two names with one folder are refused by
    resolve_detectors."""
    folder = name.replace(":", ".").replace("[", ".").replace("]", "").replace(",", ".").replace("=", "_")
    return _FOLDER_UNSAFE.sub("_", folder.replace("+", ""))


class WorkerImportError(ScanError):
    """A user's detector module that the driver imported cannot be imported on a worker."""


def _spec_on_worker(name: str, params: dict[str, Any], base: str | None, detector: str | None = None
                    ) -> DetectorSpec:
    """The DetectorSpec of import path `detector` (or `name`); if the import fails, one whose
    function raises. The module as the worker has it: the warm-up (harness.executors.clusters) brought it up to
    date for this scan."""
    try:
        return DetectorSpec(name, _import_detector(detector or name, fresh=False, hint=False), params, base, detector)
    except ConfigError as exc:
        message = f"{exc} (on a worker; the driver could import it: make it importable on every worker)"

        def unavailable(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
            raise WorkerImportError(message)
        return DetectorSpec(name, unavailable, params, base, detector)


def module_of(name: str) -> str | None:
    """The module of a `package.module:function` detector name; None for a registered detector."""
    return name.split(":")[0] if _IMPORT_PATH.fullmatch(name) else None


# The user's modules import_fresh imported: module -> digest of the source it ran.
_IMPORTED: weakref.WeakKeyDictionary[ModuleType, str] = weakref.WeakKeyDictionary()
_IMPORTING = threading.Lock()


def _loaded(top: str) -> list[ModuleType]:
    """The modules of top-level package (or module) `top` this process has imported."""
    return [m for n, m in list(sys.modules.items()) if (n == top or n.startswith(top + ".")) and m is not None]


def _stale(module: ModuleType) -> bool:
    """Whether `module`'s source differs from the one it ran, or is unknown (imported by someone
    else: the user's own `import`, an earlier version of the file, Dask's upload_file). A module
    without a .py file (a namespace package, a compiled module) has nothing to compare."""
    if not (getattr(module, "__file__", None) or "").endswith(".py"):
        return False
    source = module_source(module)
    return source is None or _IMPORTED.get(module) != digest(source)


def _forget(top: str) -> None:
    """Drop `top`'s modules from sys.modules, and their cached bytecode: an edit that keeps a file's
    size within the second of its last compile would otherwise load the old .pyc."""
    for module in _loaded(top):
        del sys.modules[module.__name__]
        path = getattr(module, "__file__", None) or ""
        if path.endswith(".py"):
            with contextlib.suppress(OSError, ValueError, NotImplementedError):
                os.remove(importlib.util.cache_from_source(path))


def import_fresh(module_name: str, also: Iterable[str] = ()) -> ModuleType:
    """Import `module_name` so that it, and every loaded module of its top-level package and of the
    top-level packages `also`, runs the source on disk now.

    When one of those modules' source changed since it was imported (a notebook's edit between two
    scans), or it was imported by someone else (what it ran is unknown), every loaded module of
    those packages is dropped and `module_name` imported again: new module objects, so that a
    `from helpers import X` is new too (importlib.reload of one module would not redo it). Only
    the user's own code: this tool's packages, __main__ and installed libraries are imported as
    they are (harness.fingerprint.is_users_code)."""
    tops = [t for t in dict.fromkeys(name.split(".")[0] for name in (module_name, *also)) if is_users_code(t)]
    with _IMPORTING:
        if any(_stale(module) for top in tops for module in _loaded(top)):
            for top in tops:
                _forget(top)
            importlib.invalidate_caches()  # files added since the import finders listed their folders
        module = importlib.import_module(module_name)
        for top in tops:
            for loaded in _loaded(top):
                source = module_source(loaded) if loaded not in _IMPORTED else None
                if source is not None:
                    _IMPORTED[loaded] = digest(source)
        return module


def _import_detector(path: str, fresh: bool = True, hint: bool = True) -> Detector:
    """The function of import path `path`; fresh: through import_fresh, with the packages of the
    function it calls (a partial's, a callable object's) when they are other packages of the user's.
    hint: say where a module that is not found is looked for (the driver's current folder is; a
    worker's is not, and its message says what to do)."""
    module_name, func_name = path.split(":")
    try:
        func = getattr(import_fresh(module_name) if fresh else importlib.import_module(module_name), func_name, None)
        others = [root for root in code_roots(func) if root.split(".")[0] != module_name.split(".")[0]] \
            if fresh and callable(func) else []
        if others:
            func = getattr(import_fresh(module_name, others), func_name, None)
    except (Exception, SystemExit) as exc:  # a user's module can fail in any way, SyntaxError included
        detail = (str(exc).splitlines() or [""])[0]
        where = (f" (is {module_name.replace('.', '/')}.py in the current folder or on PYTHONPATH?)"
                 if hint and isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0] else "")
        raise ConfigError(f"config key 'detectors': cannot import module {module_name!r} for {path!r}: "
                          f"{type(exc).__name__}: {detail}{where}") from None
    if not callable(func):
        raise ConfigError(f"config key 'detectors': {module_name!r} has no function {func_name!r}")
    return func


def _type_needed(value: Any, default: Any) -> str | None:
    """What `value` must be to replace `default` (an int, float, bool or str), or None if it is fine.
    Defaults of other types are not checked."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if number and isinstance(value, int) else "an integer"
    if isinstance(default, float):
        return None if number and math.isfinite(value) else "a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text"
    return None


def check_params(name: str, defaults: Mapping[str, Any], given: Mapping[str, Any],
                 rules: Mapping[str, Bounds]) -> None:
    """ConfigError for the first parameter in `given` that `defaults` lacks, whose type differs from
    its default's, or that lies outside its Bounds in `rules`."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"config key 'params.{name}': unknown parameter(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(defaults)}")
    for param, value in given.items():
        needed = _type_needed(value, defaults[param])
        if needed is None and param in rules and value not in rules[param]:
            needed = str(rules[param])
        if needed:
            raise ConfigError(f"config key 'params.{name}.{param}': must be {needed}, got {value!r} "
                              f"(default {defaults[param]!r})")


def resolve_detectors(names: tuple[str, ...], overrides: Mapping[str, Mapping[str, Any]],
                      entries: Mapping[str, Mapping[str, Any]] | None = None) -> list[DetectorSpec]:
    """DetectorSpecs for `names`, with each detector's defaults updated by `overrides[name]`.

    entries: for a name of the config's own (harness.config), {"detector": the registered name or
    import path it runs, "baseline": the detector it is compared with, or None for the function's
    own}; a name without an entry runs the detector of that name. Parameters are checked against
    the ranges and order of the detector run. Raises ConfigError for an unknown detector (listing
    the registered ones), a parameter the detector does not have, overrides for a detector that is
    not in `names`, a baseline that is not another of `names`, or two names with one folder.
    """
    entries = entries or {}
    specs, folders = [], {}
    for name in names:
        folder = out_name(name)
        if len(folder.encode()) > MAX_FOLDER_NAME:
            raise ConfigError(f"config key 'detectors': {name[:40]!r}... is too long a name ({len(folder.encode())} "
                              f"characters in its folder, at most {MAX_FOLDER_NAME}); give it a shorter name")
        if folder.casefold() in (reserved.casefold() for reserved in RESERVED_NAMES):
            raise ConfigError(f"config key 'detectors': {name!r} would write to the folder {folder!r}, a "
                              f"name the scan keeps for its own files ({', '.join(RESERVED_NAMES)}); rename the "
                              "module or function")
        if folder.casefold() in folders:
            raise ConfigError(f"config key 'detectors': {folders[folder.casefold()]!r} and {name!r} would both "
                              f"write to the folder {folder!r}; rename one")
        folders[folder.casefold()] = name
        entry = entries.get(name, {})
        source = entry.get("detector") or name
        if source in BASELINES:
            func, defaults, base = BASELINES[source], baseline.DEFAULT_PARAMS[source], None
        elif source in VARIANT_FUNCTIONS:
            func, defaults, base = VARIANT_FUNCTIONS[source], variants.VARIANT_PARAMS[source], variants.VARIANTS[source]
        elif _IMPORT_PATH.fullmatch(source):
            func = _import_detector(source)
            defaults, base = getattr(func, "defaults", None) or {}, getattr(func, "baseline", None)
            if not isinstance(defaults, Mapping) or not all(isinstance(k, str) for k in defaults):
                raise ConfigError(f"config key 'detectors': {source!r} has a `defaults` attribute that is not a "
                                  f"dict of parameter name: value (got {type(defaults).__name__})")
        else:
            raise ConfigError(f"config key 'detectors': unknown detector {source!r}; available: "
                              f"{', '.join(REGISTERED)}, or an import path package.module:function")
        if entry.get("baseline") is not None:
            base = entry["baseline"]
            if base == name or base not in names:
                others = ", ".join(n for n in names if n != name) or "it is the only one"
                raise ConfigError(f"config key 'detectors': the baseline {base!r} of {name!r} must be another "
                                  f"detector of this run ({others})")
        given = dict(overrides.get(name, {}))
        if defaults:  # a user detector without defaults takes any parameters
            check_params(name, defaults, given, PARAM_RULES.get(source, {}))
        params = {**defaults, **given}
        if source in ORDERED_PARAMS:
            low, high = ORDERED_PARAMS[source]
            if not params[low] < params[high]:
                raise ConfigError(f"config key 'params.{name}': {low} ({params[low]!r}) must be less than {high} "
                                  f"({params[high]!r})")
        specs.append(DetectorSpec(name, func, params, base, None if source == name else source))
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise ConfigError(f"config key 'params': {', '.join(stray)} not in 'detectors' ({', '.join(names)})")
    _no_baseline_cycle({spec.name: spec.baseline for spec in specs})
    return specs


def _no_baseline_cycle(baselines: Mapping[str, str | None]) -> None:
    """ConfigError when following baselines from a detector comes back to it (a -> b -> a): each
    would be tested against the other, twice in the comparisons' Holm family."""
    for start in baselines:
        seen, name = [start], baselines[start]
        while name in baselines and name not in seen:
            seen.append(name)
            name = baselines[name]
        if name == start:
            raise ConfigError(f"config key 'detectors': the baselines go round in a circle ("
                              f"{' -> '.join(repr(n) for n in [*seen, start])}); a baseline is a reference, give it "
                              "no baseline of its own")


# the longest folder name a detector may have: file systems refuse names over 255 bytes, and the
# final files are written under temp names a few characters longer
MAX_FOLDER_NAME = 200
