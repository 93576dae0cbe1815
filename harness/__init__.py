"""symbol scan: run event detectors over a stock universe and compare baselines with variants."""
