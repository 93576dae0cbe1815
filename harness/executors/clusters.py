"""The Dask helpers the executors share (harness.executors.local, .remote, .caller): the only
code that builds a Dask Client, in those executors.

Dask's settings for a run (QUIET_DASK, FORKSERVER, changed for as long as any scan of the process
needs them: shared_change); getting a cluster's workers ready (prepare: ship_code, check_versions,
warm_up, large_array_malloc); a remote scheduler's checks (check_scheduler, wait_for_a_worker,
workers_reachable); a LocalCluster's processes (machine_cores, local_worker_processes,
check_main_guard, the forkserver, slower heartbeats) and its dashboard's address.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import importlib.util
import ipaddress
import logging
import os
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import dask
from distributed import Client
from distributed.security import Security

from harness.config import ScanConfig
from harness.detectors import module_of
from harness.errors import ScanError, UnguardedScript
from harness.fingerprint import code_files
from cluster.forkserver import start_forkserver
from harness.io import is_url

log = logging.getLogger("scan")

# Dask's defaults poll often (worker profiler every 10 ms, ticks every 20 ms, memory monitor every
# 100 ms); an idle 8-worker LocalCluster then burns a third of a core that the detectors need.
# These intervals keep the dashboard live (its profile page samples every 100 ms instead of 10 ms).
# The tick only measures how late each process's event loop runs, for warnings we silence anyway.
QUIET_DASK = {
    "distributed.worker.profile.interval": "100ms",
    "distributed.worker.profile.cycle": "5000ms",
    "distributed.admin.tick.interval": "1000ms",
    "distributed.admin.system-monitor.interval": "2000ms",
    "distributed.worker.memory.monitor-interval": "1000ms",
    "distributed.scheduler.work-stealing-interval": "500ms",
}
# LocalCluster workers are forked from a forkserver that has already imported the scan's code (and
# with it numpy, pandas, pyarrow): a worker starts in a fraction of the time a spawned interpreter
# takes to import them. Only the LocalCluster's own workers: a remote cluster starts its own.
# allowed-failures 0: a task whose worker dies comes back as KilledWorker at once, and the driver
# reruns it as a suspect, alone (harness.executors.dispatch); Dask's own three retries would only repeat,
# four times per bisection step, the death of a worker that a symbol kills every time.
HEARTBEAT_SECONDS = 2.0  # a LocalCluster's workers' (slower_heartbeats)
FORKSERVER = {"distributed.worker.multiprocessing-method": "forkserver",
              "distributed.scheduler.allowed-failures": 0}
# Packages whose version can change a detector's numbers or the bytes written: a mismatch between
# driver and workers is an error unless allow_version_mismatch is set. Others only get a warning.
RESULT_PACKAGES = ("numpy", "pandas", "pyarrow")
CHECKED_PACKAGES = (*RESULT_PACKAGES, "python", "dask", "distributed", "cloudpickle")
CODE_PACKAGES = ("harness", "baseline", "cluster")
# A remote scheduler: connecting (TCP, and TLS) is retried for CONNECT_SECONDS, and what listens at
# the address must then answer as a Dask scheduler within ANSWER_SECONDS of the first attempt
# (distributed's own Client waits forever for a listener that never answers). A scheduler without
# workers gets WORKER_WAIT_SECONDS for one to join before the run stops.
CONNECT_SECONDS = 10
ANSWER_SECONDS = 15
WORKER_WAIT_SECONDS = 60


_SHARED = threading.Lock()
_shared: dict[str, list[Any]] = {}  # name -> [blocks holding the change, its undo]


@contextlib.contextmanager
def shared_change(name: str, make: Callable[[], Callable[[], None]]) -> Iterator[None]:
    """Within the block, the change of process-wide state that make() makes (it returns its undo):
    made as the first block of this name enters, undone as the last one leaves, however the blocks
    of several threads (two scans of one notebook) overlap. A context manager restoring what it
    found would not do: the second scan finds the first's change, and restores it after the first
    has undone it, for the rest of the process's life."""
    with _SHARED:
        held = _shared.setdefault(name, [0, None])
        if not held[0]:
            held[1] = make()
        held[0] += 1
    try:
        yield
    finally:
        with _SHARED:
            held[0] -= 1
            if not held[0]:
                del _shared[name]
                held[1]()


def dask_settings(name: str, settings: Mapping[str, Any]) -> contextlib.AbstractContextManager[None]:
    """dask.config `settings` within the block (shared_change)."""
    def make() -> Callable[[], None]:
        change = dask.config.set(settings)
        return lambda: change.__exit__(None, None, None)
    return shared_change(name, make)


def warm_up(client: Client, detectors: Iterable[str] = ()) -> None:
    """Import the scan's code and the user's detectors (import paths `module:function`) on every
    worker now, so that the first tasks do not pay for it and a module the workers cannot import
    stops the run here; then make them run the driver's code of each (_same_code_everywhere).

    The probe is the builtin exec, not a function of this project: it must run on workers that
    cannot import this project, to say so clearly.
    """
    try:
        client.run(exec, "import harness.task")  # pulls in pandas, pyarrow and the detectors
    except ImportError as exc:
        raise ScanError(f"the workers cannot import this project ({exc}); install it on every worker "
                        "or set ship_code: true") from None
    for path in detectors:
        module = module_of(path)  # names checked by harness.detectors: dotted identifiers only
        try:
            try:
                client.run(exec, f"import {module}")
            except ModuleNotFoundError as missing:  # not on the workers: ship it if it is a local file
                top = module.split(".")[0]
                if (missing.name or "").split(".")[0] != top or not ship_module(client, top):
                    raise
                client.run(exec, f"import {module}")
            _same_code_everywhere(client, path)
        except ScanError:
            raise
        except Exception as exc:  # the module's own import-time error, whatever it is
            detail = (str(exc).splitlines() or [""])[0]
            raise ScanError(f"the workers cannot import detector module {module!r} ({type(exc).__name__}: "
                            f"{detail}); make it importable on every worker (install it there or put it on "
                            "their PYTHONPATH)") from None


def detector_digest(path: str) -> str:
    """The code digest (harness.fingerprint.source_digest) of user detector `path` as this process
    runs it, once imported afresh (harness.detectors.import_fresh: a module edited since it was
    imported is imported again). A function of this package: run on the workers too, by Client.run."""
    from harness.detectors import _import_detector
    from harness.fingerprint import source_digest
    return source_digest(_import_detector(path))[0]


def _same_code_everywhere(client: Client, path: str) -> None:
    """Make the workers run the driver's code of user detector `path`: a caller's long-lived Client
    (a notebook's) keeps the modules it imported for an earlier scan, so an edited detector would go
    on running its old code there (and run.json record the new). A worker that sees the same files
    imports them again; the copy of a local package shipped to the workers is shipped again;
    otherwise a ScanError says so."""
    mine = detector_digest(path)
    if set(client.run(detector_digest, path).values()) == {mine}:
        return
    from harness.detectors import _import_detector
    from harness.fingerprint import code_roots, is_users_code
    roots = {root.split(".")[0] for root in (path.split(":")[0], *code_roots(_import_detector(path)))}
    if all([ship_module(client, root) for root in sorted(roots) if is_users_code(root)]) and \
            set(client.run(detector_digest, path).values()) == {mine}:
        return
    raise ScanError(f"the workers run another version of detector {path!r} than this process; restart "
                    "the workers, or install the same code on them")


def ship_module(client: Client, name: str) -> bool:
    """Upload the top-level module or package `name`, as this process imports it, to every worker,
    now and those that join later (Dask's UploadFile worker plugin, one per module: a new version
    replaces the old): a one-file module as its .py file, a package as a zip of its .py files
    (harness.fingerprint.code_files: the code its detectors' digests cover). False when it is no
    plain local file or folder (an installed extension module, a namespace package): it must then
    be installed on the workers. Not Client.upload_file: it loads the file into the scheduler too,
    which for a caller's LocalCluster is this process, whose later imports of the module would then
    come from that copy instead of the user's file, edits unseen."""
    from distributed.diagnostics.plugin import UploadFile

    def upload(path: str) -> None:
        client.register_plugin(UploadFile(path), name=f"symbol-scan-detectors-{name}")

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        if spec.submodule_search_locations:  # a package: its folder, zipped under its own name
            folder = Path(spec.origin).parent
            archive = Path(tmp) / f"{name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for relative, data in code_files(name)[1]:
                    zf.writestr(f"{name}/{relative}", data)
            upload(str(archive))
        elif spec.origin.endswith(".py"):
            upload(spec.origin)
        else:
            return False
    log.info("Shipped detector module %s (%s) to the workers", name, spec.origin)
    return True


def version_mismatches(versions: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(package, driver version, worker address, worker version) for every CHECKED_PACKAGES difference.

    versions: what Client.get_versions returns ({"client": {"packages": {...}}, "workers": {addr: ...}}).
    """
    mine = versions["client"]["packages"]
    found = []
    for address, info in sorted(versions.get("workers", {}).items()):
        theirs = info["packages"]
        for package in CHECKED_PACKAGES:
            if mine.get(package) != theirs.get(package):
                found.append((package, str(mine.get(package)), address, str(theirs.get(package))))
    return found


def check_versions(client: Client, allow_mismatch: bool) -> None:
    """Compare the workers' package versions with this process's; raise ScanError on a RESULT_PACKAGES
    mismatch (unless allowed), log the rest."""
    found = version_mismatches(client.get_versions(check=False, packages=["pyarrow"]))
    for package, mine, address, theirs in found:
        log.warning("Version mismatch: %s is %s here but %s on worker %s", package, mine, theirs, address)
    serious = sorted({(p, m, t) for p, m, _, t in found if p in RESULT_PACKAGES})
    if serious and not allow_mismatch:
        shown = "; ".join(f"{p} {m} here, {t} on a worker" for p, m, t in serious)
        raise ScanError(f"worker package versions differ from the driver's ({shown}): results could differ; "
                        "install the same versions everywhere or set allow_version_mismatch: true")


def code_archive(folder: Path) -> Path:
    """A zip of this project's packages (harness, baseline, cluster), named by its content hash."""
    root = Path(__file__).resolve().parents[2]
    files = sorted(p for name in CODE_PACKAGES for p in (root / name).rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    archive = folder / f"symbol-scan-{digest.hexdigest()[:12]}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, path.relative_to(root))
    return archive


def ship_code(client: Client) -> None:
    """Upload the project's code to every worker, now and to workers that join later."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = code_archive(Path(tmp))
        client.upload_file(str(archive))
    log.info("Shipped %s to the workers", archive.name)


def _has_main_guard(source: str) -> bool:
    """Whether `source` compares __name__ with "__main__" anywhere (either way round)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and len(node.comparators) == 1:
            sides = (node.left, node.comparators[0])
            if (any(isinstance(n, ast.Name) and n.id == "__name__" for n in sides)
                    and any(isinstance(n, ast.Constant) and n.value == "__main__" for n in sides)):
                return True
    return False


def check_main_guard() -> None:
    """UnguardedScript when this process runs a script without `if __name__ == "__main__":`.

    A LocalCluster's worker processes (forkserver, spawn) import the main script again as
    `__mp_main__`; unguarded, it calls scan() once more in each, which fails there (the output
    folder is in use; "an attempt has been made to start a new process before ... bootstrapping
    phase"): 87 lines, three tracebacks, and "Nanny failed to start" in the driver (issue 35).
    No claim where the main module has no readable source (Jupyter, `python -c`, a frozen app)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        source = Path(path).read_text(encoding="utf-8") if path else None
        guarded = source is None or _has_main_guard(source)
    except (OSError, ValueError, SyntaxError):
        return
    if not guarded:
        raise UnguardedScript(f"{path} runs the scan on worker processes, which import it again: put the code that "
                              f"calls scan() under `if __name__ == \"__main__\":` (or run with workers: 1)")


def security_of(cfg: ScanConfig) -> Security | None:
    if not cfg.security:
        return None
    return Security(tls_ca_file=cfg.security["ca_file"], tls_client_cert=cfg.security["cert"],
                    tls_client_key=cfg.security["key"], require_encryption=True)


def unreachable(address: str, exc: BaseException) -> ScanError:
    hint = " or do the security certificates not match the cluster's?" if address.startswith("tls://") else "?"
    return ScanError(f"cannot reach the Dask scheduler at {address}: "
                     f"{(str(exc).splitlines() or [type(exc).__name__])[0]} (is `dask scheduler` running there{hint})")


async def _identify(address: str, connection_args: Mapping[str, Any]) -> str:
    """Connect to `address` as Dask does (handshake included) and ask what answers: the "type" of
    its identity reply ("Scheduler" for a scheduler)."""
    from distributed.comm import connect as comm_connect
    comm = await comm_connect(address, timeout=CONNECT_SECONDS, **connection_args)
    try:
        await comm.write({"op": "identity", "reply": True})
        reply = await comm.read()
    finally:
        comm.abort()
    return reply.get("type", "") if isinstance(reply, dict) else ""


def check_scheduler(address: str, security: Security | None = None) -> None:
    """ScanError unless a Dask scheduler answers at `address` within ANSWER_SECONDS.

    distributed's Client never gives up on a listener that accepts and stays silent (an HTTP server,
    a half-dead process) and fails with whatever error reading a non-Dask protocol gives (an SSH
    banner read as a frame length: a MemoryError). This probe runs first, with a deadline.
    """
    args = (security or Security()).get_connection_args("client")
    fail = f"cannot reach the Dask scheduler at {address}"
    not_dask = ("(is `dask scheduler` running there? Its port is 8786 unless set with --port; "
                "8787 is its dashboard's)")
    try:
        kind = asyncio.run(asyncio.wait_for(_identify(address, args), ANSWER_SECONDS))
    except TimeoutError:  # wait_for's deadline (asyncio.TimeoutError is TimeoutError): connected, no answer
        raise ScanError(f"{fail}: something accepts connections there but did not answer as a Dask "
                        f"scheduler within {ANSWER_SECONDS} s {not_dask}") from None
    except OSError as exc:  # refused, unreachable, TLS refused: distributed retried for CONNECT_SECONDS
        raise unreachable(address, exc) from None
    except Exception:  # bytes of another protocol: any error decoding them
        raise ScanError(f"{fail}: what listens there is not a Dask scheduler (it answered in another "
                        f"protocol) {not_dask}") from None
    if kind != "Scheduler":
        what = f"a Dask {kind}" if kind else "not a Dask scheduler"
        raise ScanError(f"{fail}: what listens there is {what}, not the scheduler {not_dask}")


def wait_for_a_worker(client: Client, address: str, seconds: float = WORKER_WAIT_SECONDS) -> None:
    """Return once the scheduler at `address` has a running worker; ScanError after `seconds`."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if any(w.get("status", "running") == "running" for w in workers):
        return
    log.info("The Dask scheduler at %s has no workers yet: waiting up to %s s for one to join", address, seconds)
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError:
        raise ScanError(f"no worker joined the Dask scheduler at {address} in {seconds:g} s "
                        f"(start `dask worker {address}`)") from None
    log.info("A worker joined the Dask scheduler at %s", address)


REACH_SECONDS = 2.0  # how long the driver tries to open a connection to a remote worker


def workers_reachable(client: Client, seconds: float = REACH_SECONDS) -> bool:
    """Whether this process can open a TCP connection to every worker of `client`'s cluster (on a
    remote cluster they may sit behind the scheduler, as in Kubernetes). Only then are results
    fetched from the workers directly: relayed by the scheduler they cost it a copy each (a
    quarter of a 2-worker scan's wall on one machine), and a direct fetch from an unreachable
    worker would wait for Dask's connect timeout before falling back to the scheduler."""
    import socket
    for address in client.scheduler_info(n_workers=-1)["workers"]:
        where = urlsplit(address)
        if where.scheme not in ("tcp", "tls") or not where.hostname or not where.port:
            return False
        try:
            socket.create_connection((where.hostname, where.port), timeout=seconds).close()
        except OSError:
            return False
    return True


# glibc's mallopt parameters, and the values its dynamic mmap threshold settles at on 64-bit Linux.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


def large_array_malloc() -> bool:
    """In a worker: let glibc keep freed large arrays for reuse, as it does by default. A Nanny
    starts its worker with MALLOC_TRIM_THRESHOLD_=65536 (distributed.nanny.pre-spawn-environ), which
    also fixes the mmap threshold at 128 KiB: every array above it is a fresh mmap whose pages fault
    in one by one, and the end of a run's jobs ran 2.5x slower on such workers (3.1 s against
    1.25 s, benchmarks/remote.py). Sets the thresholds where glibc's dynamic ones settle (32 MiB,
    twice that to trim). False where this is not glibc."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def prepare(client: Client, cfg: ScanConfig, spawned: bool = True) -> None:
    """Get a cluster's workers ready for the scan; `spawned`: started by someone else (a remote
    scheduler's, a caller's), whose allocator is tuned for large arrays (large_array_malloc)."""
    if cfg.ship_code:
        ship_code(client)
    check_versions(client, cfg.allow_version_mismatch)
    warm_up(client, sorted({source for source in cfg.detector_sources() if module_of(source)}))
    if spawned:
        tuned = client.run(large_array_malloc)
        log.info("Workers' malloc thresholds for large arrays set on %d of %d workers (glibc mallopt)",
                 sum(tuned.values()), len(tuned))


def start_local_forkserver() -> None:
    """cluster.forkserver.start_forkserver, after distributed has set its own preload list (which it
    does once, the first time it builds a forkserver context): ours replaces it, and stays."""
    from distributed.utils import get_mp_context
    with dask_settings("forkserver", FORKSERVER):
        get_mp_context()
    start_forkserver()


@contextlib.contextmanager
def slower_heartbeats() -> Iterator[None]:
    """Within the block, the workers of a small cluster whose scheduler runs here heartbeat every
    HEARTBEAT_SECONDS instead of every 0.5 s.

    The scheduler tells each worker how often to heartbeat (distributed.scheduler.heartbeat_interval,
    which no config key sets): every 0.5 s up to 10 workers, a quarter of an idle 2-worker
    LocalCluster's CPU. A heartbeat only refreshes the dashboard's worker figures (memory, CPU);
    a LocalCluster's dead worker is reported by its nanny at once. Larger clusters keep Dask's
    own, longer, intervals. Dask's function is back when the last such block ends (a notebook's
    next cluster is Dask's own); a distributed without it runs the block unchanged.
    """
    import distributed.scheduler
    if getattr(distributed.scheduler, "heartbeat_interval", None) is None:
        yield
        return

    def make() -> Callable[[], None]:
        # read here, under shared_change's lock: read before it, another scan's patch could be taken
        # for Dask's function and put back as it, for good
        dask_interval = distributed.scheduler.heartbeat_interval
        distributed.scheduler.heartbeat_interval = lambda workers: max(HEARTBEAT_SECONDS, dask_interval(workers))
        return lambda: setattr(distributed.scheduler, "heartbeat_interval", dask_interval)

    with shared_change("heartbeats", make):
        yield


def leave_half_started_clusters() -> None:
    """After a Ctrl-C inside LocalCluster(): keep Dask's exit handler off the half-started cluster.

    The handler (distributed.deploy.spec.close_clusters) would close it and print a traceback: its
    close asserts that every worker got past starting (AssertionError: Status.init), and closing
    waits for workers the forkserver has yet to fork, which then fail to start, each with a
    traceback. Nothing needs closing: the scheduler lives in this process, the worker processes
    are daemonic (multiprocessing terminates them as this process exits), and the forkserver exits
    with it without forking the rest."""
    from distributed.deploy.spec import SpecCluster
    for cluster in list(SpecCluster._instances):
        cluster.shutdown_on_close = False


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container may limit)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_worker_processes(cfg: ScanConfig) -> int:
    """How many worker processes the LocalCluster starts: `workers`, but at most one per core when
    the data is local. Reading a local file is CPU work like the detectors', and more CPU-bound
    processes than cores only slow each other down (measured on 2 cores: 8 workers ran 20-30%
    slower than 2, the detectors alone 6-70% slower, BENCHMARKS.md). Remote data (s3://) keeps
    every worker asked for: their reads wait on the network and overlap; CPU slots then keep the
    detectors to one process per core (harness.executors.local)."""
    return cfg.workers if is_url(cfg.ohlcv_path) else min(cfg.workers, machine_cores())


def dashboard_link(client: Client) -> str | None:
    """The address of the dashboard of `client`'s scheduler; None when it serves none (a scheduler
    started with --no-dashboard, or without bokeh)."""
    try:
        return client.dashboard_link
    except KeyError:  # the scheduler lists no "dashboard" service
        return None


def listening_on(port: int) -> list[tuple[str, int]]:
    """The local (ip, port) pairs where this process listens on TCP `port`, e.g. ("0.0.0.0", 8787)."""
    import psutil
    process = psutil.Process()
    connections = getattr(process, "net_connections", None) or process.connections  # psutil < 6
    return sorted({(c.laddr.ip, c.laddr.port) for c in connections(kind="tcp")
                   if c.status == psutil.CONN_LISTEN and c.laddr.port == port})


def log_dashboard(client: Client, cfg: ScanConfig) -> None:
    """Log the link to the LocalCluster's dashboard, where it really listens: Dask's link says
    127.0.0.1 whatever dashboard_address binds. One warning when it listens beyond this machine's
    loopback (dashboard_address 0.0.0.0:8787: every interface): whoever reaches it sees the scan."""
    link = urlsplit(client.dashboard_link)
    served = {f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}": ipaddress.ip_address(ip.split("%")[0])
              for ip, port in listening_on(link.port)}
    wide = [where for where, ip in served.items() if not ip.is_loopback]
    every = any(served[where].is_unspecified for where in wide)
    if served and len(wide) == len(served) and not every:
        link = link._replace(netloc=wide[0])  # only a specific address serves it, not 127.0.0.1
    log.info("Dask dashboard: %s", link.geturl())
    if wide:
        log.warning("The Dask dashboard listens on %s%s: whoever can reach this machine there can open it; "
                    "dashboard_address: 127.0.0.1:%s keeps it to this machine", ", ".join(wide),
                    " (every interface)" if every else "", cfg.dashboard_address.rsplit(":", 1)[1])
