"""User detectors that break the detector contract, one way each (loaded as `bad_detectors:NAME`)."""

import os

import pandas as pd


def _every_20th(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"date": df["date"].iloc[::20].to_numpy(), "score": 1.0})


def extra_fwd_5(df, cfg):
    """An extra column named like a forward return: it would overwrite fwd_5."""
    return _every_20th(df).assign(fwd_5=123.0)


def extra_close(df, cfg):
    return _every_20th(df).assign(close=1.0)


def extra_symbol(df, cfg):
    return _every_20th(df).assign(symbol=1.0)


def extra_detector(df, cfg):
    return _every_20th(df).assign(detector=1.0)


def extra_abn(df, cfg):
    return _every_20th(df).assign(abn_5=1.0)


def extra_unnamed(df, cfg):
    return _every_20th(df).assign(**{"0": 1.0}).rename(columns={"0": 0})


def same_date_twice(df, cfg):
    events = _every_20th(df)
    return pd.concat([events, events.iloc[[-1]]], ignore_index=True)


def dates_out_of_order(df, cfg):
    return _every_20th(df).iloc[::-1].reset_index(drop=True)


def date_not_a_bar(df, cfg):
    events = _every_20th(df)
    events.loc[0, "date"] = pd.Timestamp("1999-12-25")
    return events


def not_a_frame(df, cfg):
    return [1, 2, 3]


def exits(df, cfg):
    raise SystemExit(3)


def interrupts(df, cfg):
    raise KeyboardInterrupt


def typed(df, cfg):
    """Fires every `every`-th bar; its defaults declare the parameter types."""
    return pd.DataFrame({"date": df["date"].iloc[::cfg["every"]].to_numpy(), "score": cfg["weight"]})


typed.defaults = {"every": 20, "weight": 1.0, "label": "x", "strict": False}


def listed_defaults(df, cfg):
    return _every_20th(df)


listed_defaults.defaults = ["every"]


# --- issue 27: detectors that keep state in their parameters, break the output contract in ways
# the checks used to miss, or end the process ---

MARKER_VOLUME = 7777.0  # as user_detectors: a symbol with this volume is the one that misbehaves


def counts_calls(df, cfg):
    """Every 20th bar, scored by how many symbols it has seen: 1 everywhere if each call gets its
    own parameters, 1, 2, 3... if they are shared. `calls` is a top-level key, `seen` a list held
    in a default (a shallow copy would share it)."""
    cfg.setdefault("calls", 0)
    cfg["calls"] += 1
    cfg["seen"].append(len(df))
    return _every_20th(df).assign(score=float(cfg["calls"] * len(cfg["seen"])))


counts_calls.defaults = {"seen": []}


def remembers_threshold(df, cfg):
    """Issue 27's detector: the first symbol's median volume becomes everyone's threshold."""
    threshold = cfg.setdefault("threshold", float(df["volume"].median()))
    fired = df["volume"].to_numpy() > 3 * threshold
    return pd.DataFrame({"date": df["date"].to_numpy()[fired], "score": 1.0})


def _utc(events):
    return events.assign(date=events["date"].dt.tz_localize("UTC"))


def _new_york(events):
    return events.assign(date=events["date"].dt.tz_localize("America/New_York"))


# how -> what the events of _every_20th become; `breaks` applies one (named by its `how` parameter)
BREAKS = {
    "extra_bar": lambda e: e.assign(bar=1.0),
    "extra_mkt": lambda e: e.assign(mkt_5=1.0),
    "score_twice": lambda e: pd.concat([e, e[["score"]]], axis=1),
    "date_twice": lambda e: pd.concat([e, e[["date"]]], axis=1),
    "extra_twice": lambda e: pd.concat([e.assign(x=1.0), e.assign(x=2.0)[["x"]]], axis=1),
    "score_text": lambda e: e.assign(score="high"),
    "score_numeric_text": lambda e: e.assign(score="1.5"),
    "score_objects": lambda e: e.assign(score=[{"value": 1.0}] * len(e)),
    "score_complex": lambda e: e.assign(score=1.0 + 2.0j),
    "extra_objects": lambda e: e.assign(x=[object()] * len(e)),
    "date_time_of_day": lambda e: e.assign(date=e["date"] + pd.Timedelta(hours=16)),
    "date_utc": _utc,
    "date_new_york": _new_york,
}


def breaks(df, cfg):
    """Every 20th bar, broken as BREAKS[cfg['how']] says; with cfg['marker_only'], only for the
    symbol whose bars hold MARKER_VOLUME (the others' events are fine)."""
    events = _every_20th(df)
    if cfg.get("marker_only") and not (df["volume"] == MARKER_VOLUME).any():
        return events
    return BREAKS[cfg["how"]](events)


def exits_hard(df, cfg):
    """os._exit(7): ends the process at once, no exception, no cleanup."""
    if not cfg.get("marker_only") or (df["volume"] == MARKER_VOLUME).any():
        os._exit(7)
    return _every_20th(df)


def exits_hard_inside_try(df, cfg):
    """os._exit inside `except Exception`: it must still end the detector (a real os._exit cannot be caught)."""
    try:
        os._exit(7)
    except Exception:
        pass
    return _every_20th(df)


def extra_differs(df, cfg):
    """An extra column `x`, but `y` for the marker symbol: each symbol's output keeps the contract,
    only the two together do not (checked by the staging folder, harness.staging)."""
    return _every_20th(df).assign(**{"y" if (df["volume"] == MARKER_VOLUME).any() else "x": 1.0})
