"""``labelvault serve`` end to end on a fresh data directory: real processes, TLS and PostgreSQL.

First start initialises the embedded cluster and serves ``/healthz`` over TLS 1.3; ``init`` prints
a one-time password once and refuses to run twice; SIGTERM stops the server and its PostgreSQL;
a second start reuses the cluster with its data; the password shows up in no log.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.foundation.foundation_cli import LABELVAULT, cli_env, run_many
from tests.support.platform import free_port


class Served:
    """One ``labelvault serve`` process, its output captured in files."""

    def __init__(self, env: dict[str, str], logs: Path, name: str) -> None:
        self.env = env
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        self.started_at = time.monotonic()
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [LABELVAULT, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _healthz(port: int, cafile: Path) -> tuple[int, str | None]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
        return status, conn.sock.version() if conn.sock else None  # type: ignore[union-attr]
    finally:
        conn.close()


def _wait_healthy(served: Served, port: int, cafile: Path, timeout: float = 60) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            pytest.fail(f"serve exited with {served.proc.returncode}:\n{served.stderr}")
        if cafile.exists():
            try:
                status, version = _healthz(port, cafile)
            except (OSError, http.client.HTTPException):
                pass
            else:
                if status == 200:
                    return version
        time.sleep(0.1)
    pytest.fail(f"serve did not become healthy:\n{served.stdout}\n{served.stderr}")


@pytest.fixture
def fresh() -> Iterator[tuple[dict[str, str], Path]]:
    """A private runtime dir and an empty data dir (not pytest's rotating tmp_path: another
    pytest run on the machine must not delete a live cluster)."""
    root = Path(tempfile.mkdtemp(prefix="lv-serve-"))
    runtime, data_dir = root / "runtime", root / "data"
    runtime.mkdir(mode=0o700)
    (root / "logs").mkdir()
    env = cli_env(
        keep_database_url=False,
        LABELVAULT_DATA_DIR=str(data_dir),
        LABELVAULT_PORT=str(free_port()),
        XDG_RUNTIME_DIR=str(runtime),
    )
    try:
        yield env, data_dir
    finally:
        # never leave an embedded PostgreSQL behind, whatever happened
        pgdata = data_dir / "pg"
        if (pgdata / "postmaster.pid").exists():
            from pgserver import _commands

            user = "pgserver" if os.geteuid() == 0 else None
            _commands.pg_ctl(  # type: ignore[attr-defined]
                ["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user
            )
        shutil.rmtree(root, ignore_errors=True)


def test_serve_init_restart_on_a_fresh_data_dir(fresh: tuple[dict[str, str], Path]) -> None:
    env, data_dir = fresh
    logs_dir = data_dir.parent / "logs"
    port = int(env["LABELVAULT_PORT"])
    cafile = data_dir / "tls" / "localhost.crt"
    pgdata = data_dir / "pg"
    org = f"org-{os.urandom(4).hex()}"

    first = Served(env, logs_dir, "first")
    try:
        assert _wait_healthy(first, port, cafile) == "TLSv1.3"
        assert f"https://localhost:{port}" in first.stdout
        assert pgdata.joinpath("PG_VERSION").is_file()
        cluster_stamp = pgdata.joinpath("PG_VERSION").stat().st_ino
        # while it runs, other commands share its PostgreSQL
        results = run_many({"init": (["init"], env), "org": (["org", "create", org], env)})
    finally:
        first_code = first.stop()
    init, created = results["init"], results["org"]
    assert created.returncode == 0, created.output
    assert init.returncode == 0, init.output
    match = re.search(r"one-time password:\s+(\S+)", init.stdout)
    assert match, init.stdout
    password = match.group(1)
    assert len(password) >= 12
    assert init.stdout.count(password) == 1

    # SIGTERM is a clean stop: the process exits and takes its PostgreSQL down with it
    assert first_code == 0, first.stderr
    assert not pgdata.joinpath("postmaster.pid").exists()

    second = Served(env, logs_dir, "second")
    try:
        assert _wait_healthy(second, port, cafile) == "TLSv1.3"
        restart_seconds = time.monotonic() - second.started_at
        results = run_many({"init": (["init"], env), "list": (["org", "list"], env)})
    finally:
        second_code = second.stop()
    assert second_code == 0, second.stderr
    assert not pgdata.joinpath("postmaster.pid").exists()
    # the same cluster, not a new one, and quickly
    assert pgdata.joinpath("PG_VERSION").stat().st_ino == cluster_stamp
    assert restart_seconds < 30
    assert org in results["list"].stdout, results["list"].output

    again = results["init"]
    line = again.error_line()
    assert "a system administrator already exists" in line
    assert password not in again.output

    logs = [first.stdout, first.stderr, second.stdout, second.stderr, created.output]
    logs += [results["list"].output]
    logs += [p.read_text(errors="replace") for p in (pgdata / "log").glob("*") if p.is_file()]
    if (pgdata / "log").is_file():
        logs.append((pgdata / "log").read_text(errors="replace"))
    for text in logs:
        assert password not in text


def _children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _wait_for_workers(pid: int, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [c for c in _children_of(pid) if _is_labelvault(c)]
        if len(children) == count:
            return children
        time.sleep(0.1)
    pytest.fail(f"expected {count} worker processes, saw {_children_of(pid)}")


def _stop_orphaned_postgres(pgdata: Path) -> None:
    """The embedded PostgreSQL of a supervisor that was killed outright is still running."""
    pidfile = pgdata / "postmaster.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text().splitlines()[0]), signal.SIGINT)  # fast shutdown
    deadline = time.monotonic() + 60
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _is_labelvault(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"labelvault" in f.read()
    except OSError:
        return False


def test_serve_with_workers_stops_cleanly_and_fails_fast(
    fresh: tuple[dict[str, str], Path],
) -> None:
    env, data_dir = fresh
    env = {**env, "LABELVAULT_WORKERS": "2"}
    logs_dir = data_dir.parent / "logs"
    port = int(env["LABELVAULT_PORT"])
    cafile = data_dir / "tls" / "localhost.crt"
    pgdata = data_dir / "pg"

    # two worker processes accept on one socket; SIGTERM to the server stops both, then its
    # PostgreSQL (once, in the supervising process)
    served = Served(env, logs_dir, "workers")
    try:
        assert _wait_healthy(served, port, cafile) == "TLSv1.3"
        workers = _wait_for_workers(served.proc.pid, 2)
        assert "workers: 2 processes" in served.stdout
        for _ in range(10):  # requests are answered whichever worker accepts them
            assert _healthz(port, cafile)[0] == 200
    finally:
        code = served.stop()
    assert code == 0, served.stderr
    assert not any(os.path.exists(f"/proc/{w}") and _is_labelvault(w) for w in workers)
    assert not pgdata.joinpath("postmaster.pid").exists()

    # a worker that dies takes the others down with it: no half-capacity server left running
    served = Served(env, logs_dir, "workers-killed")
    try:
        _wait_healthy(served, port, cafile)
        first, _ = _wait_for_workers(served.proc.pid, 2)
        os.kill(first, signal.SIGKILL)
        code = served.proc.wait(timeout=60)
    finally:
        served.stop()
    assert code == 1
    assert "a server process ended unexpectedly" in served.stderr
    assert not pgdata.joinpath("postmaster.pid").exists()

    # the supervisor killed outright (no handler runs): its workers stop, none serves on alone
    served = Served(env, logs_dir, "supervisor-killed")
    try:
        _wait_healthy(served, port, cafile)
        workers = _wait_for_workers(served.proc.pid, 2)
        served.proc.kill()
        served.proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(_is_labelvault(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_is_labelvault(w) for w in workers)
    finally:
        served.stop()
        _stop_orphaned_postgres(pgdata)
