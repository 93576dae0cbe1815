"""The sample universe: deterministic bytes and the features it promises."""


import numpy as np
import pandas as pd

from conftest import same_tree
from harness.io import list_symbols, read_symbol_data
from harness.synth import write_universe


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    write_universe(tmp_path / "a", 12, 3, seed=5)
    write_universe(tmp_path / "b", 12, 3, seed=5)
    write_universe(tmp_path / "c", 12, 3, seed=6)
    assert same_tree(tmp_path / "a", tmp_path / "b")
    assert not same_tree(tmp_path / "a", tmp_path / "c")


def test_universe_behaves_like_equities(tmp_path):
    names = write_universe(tmp_path, 150, 4, seed=3)
    assert list_symbols(str(tmp_path)) == names
    assert any("." in n for n in names) and any("-" in n for n in names)
    frames = {n: read_symbol_data(n, str(tmp_path), 10_000) for n in names}
    starts = {f["date"].iloc[0] for f in frames.values()}
    ends = {f["date"].iloc[-1] for f in frames.values()}
    assert len(starts) > 1 and len(ends) > 1, "some symbols should start late and some end early"
    assert any(len(list((tmp_path / f"symbol={n}").iterdir())) > 1 for n in names)
    for frame in frames.values():
        assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
        assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
        assert frame["date"].dt.day_of_week.max() < 5
    returns = np.concatenate([np.diff(np.log(f["close"].to_numpy())) for f in frames.values()])
    kurtosis = pd.Series(returns).kurt()
    assert kurtosis > 1.0, f"returns should be fat-tailed, excess kurtosis {kurtosis:.2f}"
    gaps = np.concatenate([(f["open"] / f["close"].shift(1) - 1).abs().dropna().to_numpy() for f in frames.values()])
    assert (gaps >= 0.03).sum() > 0


def test_bytes_do_not_depend_on_the_last_bits_of_transcendental_functions(tmp_path, monkeypatch):
    """Another CPU's numpy may differ from this one's in the last bit of exp, log, tanh...: nudge every
    such ufunc by one ulp and the generator must still write the same bytes. (The SIMD switch of
    tests/test_portable.py leaves float64 exp/log unchanged on AVX2 machines: this test is sharper.)"""
    write_universe(tmp_path / "plain", 8, 3, seed=5)
    for name in ("exp", "log", "expm1", "log1p", "power", "tanh", "sin", "cos", "exp2", "log2", "log10"):
        ufunc = getattr(np, name)
        monkeypatch.setattr(np, name, lambda *args, _f=ufunc, **kw: np.nextafter(_f(*args, **kw), np.inf))
    write_universe(tmp_path / "nudged", 8, 3, seed=5)
    assert same_tree(tmp_path / "plain", tmp_path / "nudged")
