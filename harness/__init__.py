"""symbol scan: run event detectors over a stock universe and compare baselines with variants.

`from harness import scan` (harness.api) runs it from Python. The name is resolved on first use:
a worker process importing harness.task does not import the driver with it.
"""

from typing import Any

__version__ = "0.2.0"
__all__ = ["scan", "ScanResult", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("scan", "ScanResult"):
        from harness import api
        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
