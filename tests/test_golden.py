"""Golden outputs: every baseline and variant on a fixed synthetic universe, pinned as CSV.

A failure here means detector semantics (or forward returns, or the reader) changed. baseline/ is
frozen; for a deliberate change to a variant, regenerate with tests/golden/make_golden.py.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
from make_golden import UNIVERSE, golden_frames  # noqa: E402

from harness.detectors import REGISTERED  # noqa: E402
from harness.synth import write_universe  # noqa: E402


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden") / "ohlcv"
    write_universe(root, **UNIVERSE)
    return golden_frames(root)


@pytest.mark.parametrize("name", REGISTERED)
def test_matches_golden(computed, name):
    expected = pd.read_csv(GOLDEN / f"{name}.csv", parse_dates=["date"])
    actual = computed[name]
    assert len(expected) > 0, "a golden file with no events pins nothing"
    assert actual["symbol"].tolist() == expected["symbol"].tolist()
    assert actual["date"].tolist() == expected["date"].tolist()
    for column in expected.columns[2:]:
        np.testing.assert_allclose(actual[column].to_numpy(), expected[column].to_numpy(),
                                   rtol=1e-12, atol=0, equal_nan=True, err_msg=f"{name}.{column}")
