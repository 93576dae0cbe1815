"""User detectors that break the detector contract, one way each (loaded as `bad_detectors:NAME`)."""

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
