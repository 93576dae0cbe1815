"""The detector registry: config names -> functions, parameters and the baseline each variant varies.

A name is either registered here (the baselines and harness.variants) or an import path
`package.module:function` to a user's detector. A user detector may carry two optional attributes:
`defaults` (a dict of parameters) and `baseline` (the name of the detector it varies).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable, Mapping

import pandas as pd

import baseline
from harness import variants
from harness.errors import ConfigError
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
REGISTERED = (*BASELINES, *VARIANT_FUNCTIONS)
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """One detector of a run: its config name, function, parameters, and the baseline it varies."""

    name: str
    func: Detector
    params: dict[str, Any]
    baseline: str | None = None

    @property
    def out_name(self) -> str:
        return out_name(self.name)


def out_name(name: str) -> str:
    """A detector's folder under out_dir: its config name with ':' turned into '.'."""
    return name.replace(":", ".")


def _import_detector(path: str) -> Detector:
    module_name, func_name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"config key 'detectors': cannot import module {module_name!r} for {path!r}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"config key 'detectors': {module_name!r} has no function {func_name!r}")
    return func


def resolve_detectors(names: tuple[str, ...], overrides: Mapping[str, Mapping[str, Any]]) -> list[DetectorSpec]:
    """DetectorSpecs for `names`, with each detector's defaults updated by `overrides[name]`.

    Raises ConfigError for an unknown name (listing the registered ones), a parameter the detector
    does not have, or overrides for a detector that is not in `names`.
    """
    specs = []
    for name in names:
        if out_name(name).casefold() in (reserved.casefold() for reserved in RESERVED_NAMES):
            raise ConfigError(f"config key 'detectors': {name!r} would write to the folder {out_name(name)!r}, a "
                              f"name the scan keeps for its own files ({', '.join(RESERVED_NAMES)}); rename the "
                              "module or function")
        if name in BASELINES:
            func, defaults, base = BASELINES[name], baseline.DEFAULT_PARAMS[name], None
        elif name in VARIANT_FUNCTIONS:
            func, defaults, base = VARIANT_FUNCTIONS[name], variants.VARIANT_PARAMS[name], variants.VARIANTS[name]
        elif _IMPORT_PATH.fullmatch(name):
            func = _import_detector(name)
            defaults, base = getattr(func, "defaults", {}), getattr(func, "baseline", None)
        else:
            raise ConfigError(f"config key 'detectors': unknown detector {name!r}; available: "
                              f"{', '.join(REGISTERED)}, or an import path package.module:function")
        given = dict(overrides.get(name, {}))
        if defaults:
            unknown = sorted(set(given) - set(defaults))
            if unknown:
                raise ConfigError(f"config key 'params.{name}': unknown parameter(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(defaults)}")
        specs.append(DetectorSpec(name, func, {**defaults, **given}, base))
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise ConfigError(f"config key 'params': {', '.join(stray)} not in 'detectors' ({', '.join(names)})")
    return specs
