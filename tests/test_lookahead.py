"""No look-ahead: the events a detector reports up to row t do not change when rows after t are cut."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.detectors import REGISTERED, resolve_detectors
from harness.io import list_symbols, read_symbol_data


@pytest.fixture(scope="module")
def frames(small_universe):
    return [read_symbol_data(s, str(small_universe), 10_000) for s in list_symbols(str(small_universe))]


@pytest.mark.parametrize("name", REGISTERED)
def test_events_up_to_t_do_not_depend_on_later_bars(frames, name):
    spec = resolve_detectors((name,), {})[0]
    full = {i: spec.func(frame, spec.params) for i, frame in enumerate(frames)}

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(which=st.integers(0, len(frames) - 1), cut=st.floats(0.0, 1.0))
    def check(which, cut):
        frame = frames[which]
        t = int(cut * (len(frame) - 1))
        cut_events = spec.func(frame.iloc[: t + 1].copy(), spec.params)
        expected = full[which][full[which]["date"] <= frame["date"].iloc[t]]
        assert cut_events["date"].tolist() == expected["date"].tolist()
        np.testing.assert_allclose(cut_events["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-12)

    check()
    assert sum(len(e) for e in full.values()) > 0, f"{name} never fired on the sample universe"
