"""Golden outputs: every baseline and variant on committed input bars (tests/golden/ohlcv), pinned as CSV.

A failure here means detector semantics (or forward returns, or the reader) changed. baseline/ is
frozen; for a deliberate change to a variant, regenerate with tests/golden/make_golden.py.
The comparison is exact: the input bytes are fixed and the detectors use only arithmetic whose
results IEEE 754 fixes (tests/test_portable.py checks the whole scan under other SIMD code), and
CSV with %.17g round-trips every float64.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
from make_golden import INPUT, golden_frames  # noqa: E402

from harness.detectors import REGISTERED  # noqa: E402


@pytest.fixture(scope="module")
def computed():
    return golden_frames(INPUT)


def test_golden_input_is_small_and_complete():
    files = list(INPUT.rglob("*.parquet"))
    assert len({f.parent for f in files}) == 20 and len(files) > 20, "20 symbols, some split into files per year"
    assert sum(f.stat().st_size for f in files) < 500_000


@pytest.mark.parametrize("name", REGISTERED)
def test_matches_golden(computed, name):
    expected = pd.read_csv(GOLDEN / f"{name}.csv", parse_dates=["date"])
    actual = computed[name]
    assert len(expected) > 0, "a golden file with no events pins nothing"
    assert actual["symbol"].tolist() == expected["symbol"].tolist()
    assert actual["date"].tolist() == expected["date"].tolist()
    for column in expected.columns[2:]:
        np.testing.assert_array_equal(actual[column].to_numpy(), expected[column].to_numpy(),
                                      err_msg=f"{name}.{column}")
