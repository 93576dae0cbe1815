"""Exception types for mistakes a user can make; the CLI catches ScanError once and exits non-zero."""


class ScanError(Exception):
    """Base of every error the user can cause or must act on. The message is one line."""

    exit_code = 1


class ConfigError(ScanError):
    """A bad config key, CLI flag or value. Raised before any process starts."""

    exit_code = 2


class UnguardedScript(ScanError, SystemExit):
    """The script that runs the scan lacks `if __name__ == "__main__":`; the workers would run it again.
    Also a SystemExit whose code is the message: uncaught in the script, Python prints that one line
    (exit status 1) instead of a traceback through the harness."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.code = f"error: {message}"


class DataError(ScanError):
    """Bad input data: an unreadable file, a missing column, an invalid symbol folder."""

    exit_code = 2


class DetectorOutputError(ScanError):
    """A detector returned something that breaks the output contract (DESIGN.md, Detectors)."""


class RunReplaced(ScanError):
    """A ScanResult read after its output folder came to hold another run (a later scan into it)."""


class LookAheadError(ScanError):
    """A detector's events up to a bar changed when the bars after it were cut (lookahead_check: fail)."""

    exit_code = 2


class SymbolFailed(ScanError):
    """A symbol's task raised (or killed its worker); names the symbol and, when known, the detector.

    exit_code: 2 when the symbol's data is at fault (a DataError in the task), else 1.
    """

    def __init__(self, symbol: str, detector: str | None, message: str, traceback_text: str = "",
                 exit_code: int = 1):
        where = f"symbol {symbol!r}" + (f", detector {detector!r}" if detector else "")
        super().__init__(f"{where} failed: {message}")
        self.symbol = symbol
        self.detector = detector
        self.traceback_text = traceback_text
        self.exit_code = exit_code


class Interrupted(ScanError):
    """SIGINT or SIGTERM stopped the run; flushed work is kept for --resume."""

    exit_code = 130


class StopRequested(KeyboardInterrupt):
    """Raised by the driver's SIGINT/SIGTERM handler. A KeyboardInterrupt that is not this one came
    from a detector's own code, and fails that symbol like any other exception would."""


class OutputError(ScanError):
    """The output folder cannot be written: no space, no permission, read-only, a path in the way."""

    exit_code = 1


class FolderInUse(ScanError):
    """Another run holds the output folder's lock."""

    exit_code = 2


class DetectorParamsError(ScanError):
    """A detector's parameters cannot be copied for each call (harness.task gives every call its own
    deep copy, so that a detector that changes them cannot change the next symbol's events)."""


class DetectorExited(SystemExit):
    """Raised in place of os._exit() called by a detector while it runs (harness.task): the symbol
    fails naming the detector, instead of the process ending with no word. A SystemExit, so that
    a detector's own `except Exception` cannot swallow it, as it could not swallow os._exit."""
