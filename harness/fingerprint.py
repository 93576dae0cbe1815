"""What decides a run's staged results, as digests: what --resume compares before it keeps them.

A staged chunk holds what the scan made of its symbols' files with the detectors' code and
parameters of the time. Resuming with any of these changed would mix old and new results in one
output, so run_fingerprint() records, part by part, everything that decides them:

- settings: the config keys that decide the outputs (not where or how fast they are computed);
- symbols: the run's universe;
- code:<detector>: the detector's code (source_digest) and params:<detector> its effective
  parameters (defaults included);
- reader: the source of the harness code that turns files into staged parts (READER_MODULES).

A detector's code is every module of its own top-level package: for `mypkg.dets:spikes`, every
.py file under the folder of the package `mypkg`, recursively, in sorted path order (a helper
module of the package included, imported or not); for a lone module `mydetectors.py`, that file.
A functools.partial (nested ones too) or a callable object counts as the function it calls: that
function's package, plus the partials' arguments (their repr). The registered detectors' code is
REGISTERED_CODE. Code outside the package (another top-level package of the user's that it
imports, installed libraries) is not covered: keep a detector's helpers in its package. The same
files are what harness.executors.clusters ships to workers that cannot import the package, and what
harness.detectors.import_fresh re-imports when one of them changed in a running process.

changed() names the parts that differ, for a one-line refusal. The symbols' input files are
checked separately, per symbol (harness.io's fingerprint of the files' names, sizes and
modification times), since they change one symbol at a time and only those symbols' chunks
need scanning again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.resources
import importlib.util
import inspect
import json
import os
import platform
import re
import site
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from harness.config import ScanConfig
    from harness.detectors import DetectorSpec

# Keys of ScanConfig that do not decide any staged byte: where and how fast the run goes.
# (lookahead_check decides no staged byte, but what was checked: a run staged with the check off,
# resumed with it on, would have checked nothing; so it is not among them.)
NOT_DECIDING = ("workers", "symbols_per_task", "scheduler_address", "dashboard_address", "out_dir", "on_error",
                "security", "ship_code", "allow_version_mismatch", "storage_options", "reuse")
# The code that turns files into staged parts: reading, forward returns, the task, and the
# staging's own arithmetic (the market's chunk sums, its outlier rule).
READER_MODULES = ("harness.io", "harness.eval", "harness.task", "harness.stats.market", "harness.staging",
                  "harness.staged_chunk", "harness.staged_facts")
# This tool's own packages, and the code of its registered detectors (baseline/ and the variants,
# which import it): the rest of the harness is not a detector's code.
OWN_PACKAGES = ("harness", "baseline", "cluster")
REGISTERED_CODE = ("baseline", "harness.variants")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _json_digest(value: Any) -> str:
    return digest(json.dumps(value, sort_keys=True, default=str).encode())


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stable_repr(value: Any) -> str:
    """repr(value) the same in every process: sets and dicts in sorted order (a set of strings
    iterates in another order in each process, string hashes being randomised), functions and
    classes by module and name, and no memory address (`<object at 0x7f…>`) anywhere."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(stable_repr(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(f"{stable_repr(k)}: {stable_repr(v)}" for k, v in value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(stable_repr(v) for v in value) + "]"
    if inspect.isroutine(value) or inspect.isclass(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return _ADDRESS.sub("", repr(value))


def underlying(function: Any) -> tuple[Any, list[str]]:
    """(the function that `function` calls, the reprs of the arguments bound on the way): through
    functools.partial (nested too) to its func, from a callable object to its class's __call__."""
    bound = []
    while isinstance(function, functools.partial):
        # the same in every process (stable_repr): the digest must be the same in the next run,
        # and on the workers
        bound.append(stable_repr((function.args, function.keywords)))
        function = function.func
    if not inspect.isroutine(function) and not inspect.isclass(function) and callable(function):
        function = type(function).__call__
    return function, bound


def code_roots(function: Any) -> tuple[str, ...]:
    """The modules whose code (code_files) runs for `function`: its underlying function's top-level
    package, or REGISTERED_CODE for this tool's own; () when it has no module."""
    module = getattr(underlying(function)[0], "__module__", None)
    if not module:
        return ()
    top = module.split(".")[0]
    return REGISTERED_CODE if top in OWN_PACKAGES else (top,)


def code_files(name: str) -> tuple[str, list[tuple[str, bytes]]] | None:
    """(where, [(path relative to it, bytes)]) of module `name`'s code: a package's every .py file,
    recursively, sorted by path (a zipped package, as shipped to a worker, too); a lone module's
    file. None when it has no source file (a notebook's __main__, a built-in or compiled module).
    Imports `name` if it is not yet."""
    module = sys.modules.get(name) or importlib.import_module(name)
    if getattr(module, "__path__", None) is not None:  # a package
        root = importlib.resources.files(module)
        return str(root), sorted(_py_files(root))
    source = module_source(module)
    return (module.__file__, [(Path(module.__file__).name, source)]) if source is not None else None


def _py_files(folder: Any, prefix: str = "") -> list[tuple[str, bytes]]:
    """Every .py file under `folder` (a Traversable: a folder or a folder in a zip): (relative
    path, bytes). Symlinked folders are not followed (as Path.rglob), so a link loop ends."""
    found = []
    for entry in folder.iterdir():
        if entry.is_dir() and not (isinstance(entry, Path) and entry.is_symlink()):
            found += _py_files(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".py") and entry.is_file():
            found.append((f"{prefix}{entry.name}", entry.read_bytes()))
    return found


def module_source(module: ModuleType) -> bytes | None:
    """The bytes of `module`'s .py file now (read through its loader: a zip's too); None without one."""
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return None
    loader = getattr(module, "__loader__", None)
    try:
        return loader.get_data(path) if hasattr(loader, "get_data") else Path(path).read_bytes()
    except OSError:
        return None


def source_digest(function: Any) -> tuple[str, str]:
    """(digest of the code that runs for `function` (module docstring), where that code is: a
    file, a package's folder). A function without a source file (defined in a notebook cell,
    say) is digested by its compiled code and constants, which change when it is edited and rerun."""
    target, bound = underlying(function)
    parts, where = list(bound), []
    for root in code_roots(function):
        try:
            found = code_files(root)
        except Exception:  # a module that no longer imports: no code of it to digest
            found = None
        if found is not None:
            parts.append([root, [(path, digest(data)) for path, data in found[1]]])
            where.append(found[0])
    if where:
        return _json_digest(parts), ", ".join(where)
    code = getattr(target, "__code__", None)
    if code is None:
        return digest(repr(function).encode()), repr(function)
    return (_json_digest([*bound, digest(code.co_code + repr(code.co_consts).encode())]),
            f"{code.co_filename}:{code.co_name}")


@functools.cache
def _library_folders() -> tuple[Path, ...]:
    """Where installed libraries and the standard library live."""
    paths = sysconfig.get_paths()
    folders = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    folders += [*site.getsitepackages(), site.getusersitepackages()]
    return tuple(Path(os.path.realpath(f)) for f in folders)


def is_users_code(top: str) -> bool:
    """Whether top-level module or package `top` is a user's own code: not this tool's, not the
    running __main__, not a built-in and not installed with the libraries (site-packages, the
    standard library). An editable install's folder is the user's."""
    if top in (*OWN_PACKAGES, "__main__") or top in sys.builtin_module_names:
        return False
    module = sys.modules.get(top)
    try:
        spec = module.__spec__ if module is not None else importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    locations = [spec.origin] if spec and spec.has_location else list(spec.submodule_search_locations or []) if spec else []
    if not locations or None in locations:
        return False
    libraries = _library_folders()
    return not any(Path(os.path.realpath(where)).is_relative_to(folder) for where in locations for folder in libraries)


def run_fingerprint(cfg: ScanConfig, symbols: Sequence[str], detectors: Sequence[DetectorSpec],
                    codes: Mapping[str, str] | None = None) -> dict[str, str]:
    """Everything that decides the staged results, part by part (module docstring). codes: the
    detectors' source_digest()s when they are known already (reading a package twice costs)."""
    settings = {k: v for k, v in cfg.as_dict().items() if k not in NOT_DECIDING and k not in ("symbols", "params")}
    parts = {"settings": _json_digest(settings), "symbols": _json_digest(list(symbols))}
    for spec in detectors:
        parts[f"code:{spec.name}"] = codes[spec.name] if codes and spec.name in codes else source_digest(spec.func)[0]
        parts[f"params:{spec.name}"] = _json_digest(spec.params)
    parts["reader"] = digest(b"".join(Path(inspect.getsourcefile(sys.modules[name]) or "").read_bytes()
                                      for name in READER_MODULES))
    return parts


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide the results, for run.json. Read from the
    installed metadata: importing dask and distributed for this would cost a serial run a second."""
    from importlib.metadata import version
    return {"python": platform.python_version(),
            **{name: version(name) for name in ("pandas", "numpy", "pyarrow", "dask", "distributed")}}


def changed_inputs(staged: Mapping[str, str], ohlcv_path: str, storage_options: Mapping[str, Any]) -> list[str]:
    """The symbols whose input files are not what they were when their chunk was staged (`staged`:
    symbol -> harness.io.symbol_fingerprint then), in symbol order. One listing per symbol."""
    from harness.io import symbol_fingerprint
    return [symbol for symbol, print_then in sorted(staged.items())
            if symbol_fingerprint(symbol, ohlcv_path, storage_options) != print_then]


def changed(saved: Mapping[str, str], now: Mapping[str, str], detectors: Sequence[DetectorSpec]) -> str:
    """What differs between two run_fingerprint()s, in words ("" when nothing does)."""
    where = {f"code:{spec.name}": source_digest(spec.func)[1] for spec in detectors}
    reasons = []
    for part in sorted(set(saved) | set(now), key=lambda p: (p.split(":")[0] != "settings", p)):
        if saved.get(part) == now.get(part):
            continue
        kind, _, name = part.partition(":")
        if kind == "code" and part in saved and part in now:
            reasons.append(f"the code of detector {name!r} ({where[part]})")
        elif kind == "params" and part in saved and part in now:
            reasons.append(f"the parameters of detector {name!r}")
        elif kind in ("code", "params"):
            reasons.append("the list of detectors")
        elif kind == "reader":
            reasons.append("this tool's code that reads and stages the data (" + ", ".join(READER_MODULES) + ")")
        else:
            reasons.append({"settings": "the config", "symbols": "the universe (its symbols)"}.get(kind, kind))
    return ", ".join(dict.fromkeys(reasons))
