"""Beyond one machine, for real on 127.0.0.1: TLS, shipping the code to bare workers, version checks, S3."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from harness.executors.clusters import version_mismatches
from conftest import DETECTORS, REPO, cli_env, DaskProcesses, free_port, output_files, run_cli, write_config


def scan(tmp_path: Path, out: str, data: str, *flags: str, env: dict | None = None, timeout: float = 300, **keys):
    keys = {"ohlcv_path": data, "detectors": DETECTORS, "out_dir": str(tmp_path / out), "flush_every": 4,
            "dashboard_address": "127.0.0.1:0", **keys}
    proc = run_cli("--config", str(write_config(tmp_path / f"{out}.yaml", **keys)), *flags, env=env, timeout=timeout)
    return proc, tmp_path / out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_universe):
    tmp = tmp_path_factory.mktemp("reference")
    proc, out = scan(tmp, "out", str(small_universe), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    return output_files(out)


# --- TLS ---

def make_certificates(folder: Path, name: str) -> dict[str, str]:
    """A CA and a certificate it signed for 127.0.0.1, made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem",
            "-days", "2", "-subj", f"/CN={name} test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.pem", "-CAkey", f"{name}-ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return {"ca_file": str(folder / f"{name}-ca.pem"), "cert": str(folder / f"{name}.pem"),
            "key": str(folder / f"{name}.key")}


def test_tls_scheduler_scan_and_wrong_certificate(tmp_path, small_universe, reference):
    good = make_certificates(tmp_path / "certs", "cluster")
    other = make_certificates(tmp_path / "certs", "stranger")
    with DaskProcesses(workers=2, tls=good) as cluster:
        cluster.wait()
        assert cluster.address.startswith("tls://")
        proc, out = scan(tmp_path, "out", str(small_universe), "--scheduler", cluster.address, security=good)
        assert proc.returncode == 0, proc.stderr
        assert output_files(out) == reference

        started = time.monotonic()
        proc, _ = scan(tmp_path, "denied", str(small_universe), "--scheduler", cluster.address, security=other)
        assert proc.returncode == 1
        assert time.monotonic() - started < 60, "a refused certificate must fail, not hang"
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith(f"error: cannot reach the Dask scheduler at {cluster.address}")
        assert "certificates" in lines[-1] and "Traceback" not in proc.stderr

        proc, _ = scan(tmp_path, "plain", str(small_universe), "--scheduler", cluster.address)
        assert proc.returncode == 2 and "needs security" in proc.stderr
        assert cluster.alive()


# --- a --scheduler address that is malformed, not a scheduler, or a scheduler without workers ---

@pytest.mark.parametrize("address", ["tcp://127.0.0.1:abc", "tcp://"])
def test_malformed_scheduler_address_is_a_config_error(tmp_path, small_universe, address):
    proc, _ = scan(tmp_path, "out", str(small_universe), "--scheduler", address, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: config key 'scheduler_address': ") and "tcp://host:port" in line
    assert repr(address) in line


def test_scheduler_address_parsing():
    from harness.config import scheduler_host_port
    from harness.errors import ConfigError
    assert scheduler_host_port("tcp://127.0.0.1:8786") == ("127.0.0.1", 8786)
    assert scheduler_host_port("tls://dask.example.org:8786") == ("dask.example.org", 8786)
    assert scheduler_host_port("tcp://[::1]:8786") == ("::1", 8786)
    for bad in ("tcp://127.0.0.1", "tcp://:8786", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://::1:8786",
                "tcp://[::1]8786", "tcp://127.0.0.1:٣"):
        with pytest.raises(ConfigError, match="config key 'scheduler_address'"):
            scheduler_host_port(bad)


class FakeListener:
    """A socket on 127.0.0.1, served by a thread of the test process, that accepts every connection,
    sends `banner` (if any) and then keeps the connection open without a word more."""

    def __init__(self, banner: bytes | None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.banner, self.conns = banner, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.conns.append(conn)
            if self.banner:
                conn.sendall(self.banner)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_8.9\r\n", None], ids=["other-protocol", "silent"])
def test_listener_that_is_not_a_scheduler_fails_in_time(tmp_path, small_universe, banner):
    listener = FakeListener(banner)
    try:  # a hang is a TimeoutExpired after 90 s (before the fix: forever, or a MemoryError traceback)
        proc, _ = scan(tmp_path, "out", str(small_universe), "--scheduler", listener.address, timeout=90)
    finally:
        listener.close()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot reach the Dask scheduler at {listener.address}: ")
    assert ("not a Dask scheduler" if banner else "did not answer as a Dask scheduler") in line
    assert "8787 is its dashboard's" in line


def wait_for_scheduler(address: str) -> None:
    from distributed import Client
    with Client(address, timeout=30):
        pass


def test_scan_waits_for_a_worker_to_join(tmp_path, small_universe, reference):
    with DaskProcesses(workers=0) as cluster:
        wait_for_scheduler(cluster.address)
        config = write_config(tmp_path / "out.yaml", ohlcv_path=str(small_universe), detectors=DETECTORS,
                              out_dir=str(tmp_path / "out"), flush_every=4, scheduler_address=cluster.address)
        proc = subprocess.Popen([sys.executable, "-m", "harness.run", "--config", str(config)], cwd=REPO,
                                env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
        reader.start()
        try:
            deadline, seen = time.monotonic() + 60, []
            while not any("has no workers yet" in line for line in seen):
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            assert "waiting up to 60 s for one to join" in seen[-1], seen
            cluster.procs.append(subprocess.Popen(  # stopped with the scheduler
                [sys.executable, "-m", "distributed.cli.dask_worker", cluster.address, "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=cli_env()))
            proc.wait(timeout=120)
            reader.join(timeout=10)
        finally:
            proc.kill()
            proc.wait()
        while not lines.empty():
            seen.append(lines.get())
        assert proc.returncode == 0, "".join(seen)
        assert any("A worker joined the Dask scheduler" in line for line in seen)
        assert output_files(tmp_path / "out") == reference


def test_no_worker_joining_is_an_error(tmp_path):
    from distributed import Client
    from harness.executors.clusters import wait_for_a_worker
    from harness.errors import ScanError
    with DaskProcesses(workers=0) as cluster, Client(cluster.address, timeout=30) as client:
        with pytest.raises(ScanError) as caught:
            wait_for_a_worker(client, cluster.address, seconds=1)
        assert str(caught.value) == (f"no worker joined the Dask scheduler at {cluster.address} in 1 s "
                                     f"(start `dask worker {cluster.address}`)")


# --- code shipped to workers that do not have the project ---

@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A venv that sees this venv's packages (dask, pandas, ...) but not the project: the editable
    install's .pth hook lives in site-packages and is not run for a path merely added to sys.path."""
    home = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    site = next(home.glob("lib/python*/site-packages"))
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(home / "bin" / "python")
    check = subprocess.run([python, "-c", "import distributed, pandas; import harness"], cwd=home,
                           capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "No module named 'harness'" in check.stderr, check.stderr
    return python


def test_ship_code_to_workers_without_the_project(tmp_path, small_universe, reference, bare_python):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with DaskProcesses(workers=2, python=bare_python, env=env, cwd=tmp_path) as cluster:
        cluster.wait()
        proc, _ = scan(tmp_path, "unshipped", str(small_universe), "--scheduler", cluster.address)
        assert proc.returncode == 1
        assert "the workers cannot import this project" in proc.stderr.strip().splitlines()[-1]
        proc, out = scan(tmp_path, "out", str(small_universe), "--scheduler", cluster.address, ship_code=True)
        assert proc.returncode == 0, proc.stderr
        assert "Shipped symbol-scan-" in proc.stderr
        assert output_files(out) == reference


def test_version_mismatches_found_and_classified():
    def packages(**versions):
        return {"packages": {"python": "3.11.7", "numpy": "2.4.6", "pandas": "3.1.1", "pyarrow": "26.0.1",
                             "dask": "2026.8.0", "distributed": "2026.8.0", "cloudpickle": "3.1.3", **versions}}
    same = {"client": packages(), "workers": {"tcp://a": packages(), "tcp://b": packages()}}
    assert version_mismatches(same) == []
    differ = {"client": packages(), "workers": {"tcp://a": packages(pandas="2.2.3"), "tcp://b": packages(dask="2025.1.0")}}
    assert version_mismatches(differ) == [("pandas", "3.1.1", "tcp://a", "2.2.3"), ("dask", "2026.8.0", "tcp://b", "2025.1.0")]


# --- data on S3 (moto's server on 127.0.0.1) ---

@pytest.fixture()
def s3_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_scan_from_s3_equals_scan_from_disk(tmp_path, small_universe, reference, s3_server):
    import pyarrow.fs as pafs
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    options = {"endpoint_override": s3_server, "scheme": "http", "region": "us-east-1"}
    s3 = pafs.S3FileSystem(access_key="testing", secret_key="testing", allow_bucket_creation=True, **options)
    s3.create_dir("bars")
    pafs.copy_files(str(small_universe), "bars/ohlcv", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=s3)
    env = cli_env(**credentials)
    cores = len(os.sched_getaffinity(0))
    for workers in ("1", str(2 * cores)):  # remote data: every worker asked for, CPU slots for detectors
        proc, out = scan(tmp_path, f"out{workers}", "s3://bars/ohlcv", "--workers", workers, env=env,
                         storage_options=options)
        assert proc.returncode == 0, proc.stderr
        assert output_files(out) == reference
        if workers != "1":
            assert json.loads((out / "run.json").read_text())["worker_processes"] == 2 * cores
            assert f"detector code runs in at most {cores} of them at a time" in proc.stderr
        assert json.loads((out / "run.json").read_text())["config"]["ohlcv_path"] == "s3://bars/ohlcv"


def test_secrets_in_storage_options_are_not_written_to_run_json(tmp_path, small_universe):
    # (a local ohlcv_path: storage_options are only written down)
    proc, out = scan(tmp_path, "out", str(small_universe), "--workers", "1", detectors=["gap"],
                     storage_options={"secret_key": "hunter2", "session_token": "hunter3", "region": "us-east-1",
                                      "endpoint_override": "http://me:hunter4@127.0.0.1:9000"})
    assert proc.returncode == 0, proc.stderr
    text = (out / "run.json").read_text()
    assert json.loads(text)["config"]["storage_options"] == {
        "secret_key": "***", "session_token": "***", "region": "us-east-1",
        "endpoint_override": "http://me:***@127.0.0.1:9000"}
    assert "hunter" not in text and "hunter" not in (out / "report.html").read_text() and "hunter" not in proc.stderr


def test_a_password_in_an_s3_url_is_shown_nowhere(tmp_path):
    proc, out = scan(tmp_path, "out", "s3://me:hunter2@bucket/ohlcv", "--workers", "1",
                     storage_options={"endpoint_override": f"127.0.0.1:{free_port()}", "scheme": "http"})
    assert proc.returncode == 2
    assert proc.stderr == ("error: config key 'ohlcv_path': cannot list 's3://me:***@bucket/ohlcv': Expected an S3 "
                           "object path of the form 'bucket/key...', got a URI: 'me:***@bucket/ohlcv' (is the "
                           "storage reachable from here? check the URL, storage_options and credentials)\n")
