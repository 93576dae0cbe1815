"""symbol scan: run event detectors over a stock universe and compare baselines with variants.

`from harness import scan` (harness.api) runs it from Python. The name is resolved on first use:
a worker process importing harness.task does not import the driver with it.
"""

import logging
from typing import Any

from harness.redact import RedactFilter

__version__ = "0.2.0"
__all__ = ["scan", "ScanResult", "__version__"]

# No log line of the scan shows a password (an s3:// path's or an endpoint's user:password@).
logging.getLogger("scan").addFilter(RedactFilter())


def __getattr__(name: str) -> Any:
    if name in ("scan", "ScanResult"):
        from harness import api
        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
