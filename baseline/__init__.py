"""Frozen reference detectors. Once their golden outputs are pinned (tests/golden/), never edit them."""

from baseline.detectors import (DEFAULT_PARAMS, breakout_52w, gap, ma_cross, rsi_oversold,
                                squeeze_breakout, volume_spike)

__all__ = ["DEFAULT_PARAMS", "breakout_52w", "gap", "ma_cross", "rsi_oversold", "squeeze_breakout",
           "volume_spike"]
