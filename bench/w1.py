"""W1 benchmark: import, concurrent annotation and export over the real HTTPS API.

By default it starts a real ``labelvault serve`` subprocess on a fresh embedded data directory
(a temporary directory, a free port, ``LABELVAULT_*`` environment), then:

1. creates, as the operator (the platform API in-process, as the CLI would), an organization, a
   text-classification project, a data owner, a manager and ``K`` annotators, each created with
   a one-time password like ``labelvault user create``;
2. each person signs in over HTTPS, changes the one-time password (``POST /auth/password``) and
   creates an API token (``POST /tokens``, needs the fresh session's recent authentication);
3. the data owner imports ``N`` deterministic ~400-character items (one streamed upload);
4. ``K`` annotators (asyncio tasks, one keep-alive HTTP/1.1 connection each: a minimal client
   by default, ``--client sdk`` for ``labelvault.client.AsyncClient``) loop next-task -> submit
   for ``S`` seconds;
5. exports every annotation if the export routes exist (request as data owner, approve as
   manager, wait until ready, download), else ``export_s`` is null with the reason;
6. reports peak RSS (``VmHWM``) of the server process tree and of the PostgreSQL processes,
   and where the CPU went while annotating (``annotate_cpu``: cores busy and milliseconds per
   annotation for the server, PostgreSQL and this client, and the machine's busy cores).

Prints ONE JSON object. ``--url URL --token-file F`` runs against an existing server instead:
``F`` (mode 600) is JSON ``{"project_id": ..., "data_owner": TOKEN, "manager": TOKEN,
"annotators": [TOKEN, ...]}`` for an existing text-classification project.

Usage: ``python bench/w1.py [--items 20000] [--annotators 8] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from labelvault.client import AsyncClient, Client, LabelVaultClientError

LABELS = ["positive", "negative", "neutral", "mixed"]
SCHEMA = {"kind": "text_classification", "labels": LABELS}
WORDS = [
    "data",
    "label",
    "model",
    "train",
    "vault",
    "secure",
    "tenant",
    "review",
    "quality",
    "annotate",
    "export",
    "import",
    "token",
    "project",
    "owner",
    "manager",
    "privacy",
    "audit",
    "encrypt",
    "key",
    "region",
    "schema",
    "batch",
    "stream",
    "latency",
    "throughput",
    "sample",
    "gold",
    "agreement",
    "kappa",
    "span",
    "image",
    "text",
    "corpus",
    "record",
    "field",
    "value",
]
LABELVAULT = str(Path(sys.executable).with_name("labelvault"))


# -- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "n": len(ordered)}


def write_items(path: Path, n: int) -> int:
    rng = random.Random(1234)  # deterministic content
    size = 0
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            words = [f"item-{i}:"]
            length = len(words[0])
            while length < 400:
                w = rng.choice(WORDS)
                words.append(w)
                length += len(w) + 1
            line = json.dumps({"text": " ".join(words), "metadata": {"n": i}}) + "\n"
            size += len(line.encode())
            f.write(line)
    return size


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


_POSTMASTER: dict[Path, int] = {}


def _postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster whose command line names ``pgdata``, and its children (backends)."""
    root = _POSTMASTER.get(pgdata)
    if root is not None and os.path.exists(f"/proc/{root}"):
        return _tree(root)
    root = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"postgres") and str(pgdata).encode() in b" ".join(cmd):
            root = _POSTMASTER[pgdata] = int(entry)
            break
    return _tree(root) if root else []


@dataclass
class RssSampler:
    """Peak ``VmHWM`` per process, sampled while the run lasts (backends come and go)."""

    server_pid: int | None
    pgdata: Path | None
    worker_pid: int | None = None
    server_peak_kb: dict[int, int] = field(default_factory=dict)
    # peak of the summed proportional set size: pages shared by forked workers count once
    server_peak_pss_kb: int = 0
    worker_peak_kb: dict[int, int] = field(default_factory=dict)
    pg_peak_kb: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        if self.server_pid:
            pss = 0
            for p in _tree(self.server_pid):
                hwm = _status_kb(p, "VmHWM")
                if hwm:
                    self.server_peak_kb[p] = max(self.server_peak_kb.get(p, 0), hwm)
                pss += _pss_kb(p)
            self.server_peak_pss_kb = max(self.server_peak_pss_kb, pss)
        if self.worker_pid:
            for p in _tree(self.worker_pid):
                hwm = _status_kb(p, "VmHWM")
                if hwm:
                    self.worker_peak_kb[p] = max(self.worker_peak_kb.get(p, 0), hwm)
        if self.pgdata:
            for p in _postgres_pids(self.pgdata):
                if self.server_pid and p in self.server_peak_kb:
                    continue
                hwm = _status_kb(p, "VmHWM")
                if hwm:
                    self.pg_peak_kb[p] = max(self.pg_peak_kb.get(p, 0), hwm)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()

    def report(self) -> dict[str, Any]:
        self.sample()
        return {
            "server_peak_rss_mb": round(sum(self.server_peak_kb.values()) / 1024, 1)
            if self.server_peak_kb
            else None,
            "server_peak_pss_mb": round(self.server_peak_pss_kb / 1024, 1)
            if self.server_peak_pss_kb
            else None,
            "server_processes": len(self.server_peak_kb),
            "worker_peak_rss_mb": round(sum(self.worker_peak_kb.values()) / 1024, 1)
            if self.worker_peak_kb
            else None,
            "postgres_peak_rss_mb_max_process": round(max(self.pg_peak_kb.values()) / 1024, 1)
            if self.pg_peak_kb
            else None,
            "postgres_peak_rss_mb_sum": round(sum(self.pg_peak_kb.values()) / 1024, 1)
            if self.pg_peak_kb
            else None,
            "postgres_processes_seen": len(self.pg_peak_kb),
        }


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) of ``pid``; with ``reaped``, also of its children that have
    exited (PostgreSQL backends come and go)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def _machine_busy_s() -> float:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS


@dataclass
class CpuMeter:
    """Where the CPU went during a phase: the server processes, PostgreSQL, this client."""

    server_pid: int | None
    pgdata: Path | None
    start: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        now = {"client": sum(os.times()[:2]), "machine": _machine_busy_s()}
        if self.server_pid:
            now["server"] = sum(_cpu_s(p) for p in _tree(self.server_pid))
        pids = _postgres_pids(self.pgdata) if self.pgdata else []
        if pids:  # (measured at both ends, or not reported)
            now["postgres"] = sum(_cpu_s(p, reaped=p == pids[0]) for p in pids)
        return now

    def begin(self) -> None:
        self.start = self._now()

    def report(self, seconds: float, annotations: int) -> dict[str, Any]:
        end = self._now()
        used = {k: end[k] - self.start[k] for k in end if k in self.start}
        return {
            "cores_busy": {k: round(v / seconds, 2) for k, v in used.items()},
            "cpu_ms_per_annotation": {
                k: round(v * 1000 / annotations, 2) for k, v in used.items() if k != "machine"
            }
            if annotations
            else None,
        }


# -- the local server --------------------------------------------------------------------------


class LocalServer:
    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        runtime = root / "runtime"
        runtime.mkdir(mode=0o700)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LABELVAULT_")}
        self.env.update(
            {
                "LABELVAULT_DATA_DIR": str(self.data_dir),
                "LABELVAULT_PORT": str(self.port),
                "LABELVAULT_HOST": "127.0.0.1",
                "LABELVAULT_LOG_LEVEL": "warning",
                "LABELVAULT_WORKERS": str(workers),
                "XDG_RUNTIME_DIR": str(runtime),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.log = (root / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [LABELVAULT, "serve"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> None:
        """``labelvault worker``: builds exports (``serve`` does not run jobs itself)."""
        self.worker = subprocess.Popen(
            [LABELVAULT, "worker"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "localhost.crt"

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "labelvault serve exited: " + (self.root / "serve.log").read_text()[-2000:]
                )
            if self.ca_file.exists():
                try:
                    ctx = ssl.create_default_context(cafile=str(self.ca_file))
                    r = httpx.get(f"{self.url}/healthz", verify=ctx, timeout=2)
                    if r.status_code == 200:
                        return time.monotonic() - started
                except (httpx.HTTPError, ssl.SSLError, OSError):
                    pass
            time.sleep(0.2)
        raise RuntimeError("labelvault serve did not become healthy")

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Person:
    email: str
    password: str
    role: str
    token: str = ""


async def provision(server: LocalServer, annotators: int) -> tuple[uuid.UUID, list[Person]]:
    """Organization, project, people (one-time passwords) as the operator, in-process."""
    os.environ["XDG_RUNTIME_DIR"] = server.env["XDG_RUNTIME_DIR"]
    from labelvault import identity
    from labelvault.kernel.actor import Actor
    from labelvault.platform import Platform, prepare_database
    from labelvault.settings import Settings
    from labelvault.tenancy import service as tenancy

    settings = Settings(data_dir=server.data_dir, log_level="warning")
    target, _ = await asyncio.to_thread(prepare_database, settings, run_migrations=False)
    platform = Platform.create(settings, target)
    await platform.open()
    operator = Actor.system("bench")
    try:
        org = await tenancy.create_organization(
            platform.db, operator, name="bench-org", region=settings.region
        )
        project = await tenancy.create_project(
            platform.db, platform.sealer, operator, org_id=org.id, name="w1-text", region=None
        )
        roles = ["data_owner", "manager"] + ["annotator"] * annotators
        people = []
        for i, role in enumerate(roles):
            email = f"{role}-{i}@bench.test"
            password = identity.one_time_password()
            user = await identity.create_user(
                platform.db,
                operator,
                email=email,
                org_id=org.id,
                password=password,
                must_change=True,
            )
            await identity.set_membership(
                platform.db, operator, project_id=project.id, user_id=user.id, role=role
            )
            people.append(Person(email, password, role))
        return project.id, people
    finally:
        await platform.close()


async def token_over_http(
    url: str, ctx: ssl.SSLContext, person: Person, project_id: uuid.UUID
) -> str:
    """Sign in, replace the one-time password, enrol TOTP if required, create a token."""
    async with httpx.AsyncClient(base_url=url, verify=ctx, timeout=60) as http:
        r = await http.post(
            "/api/v1/auth/login", json={"email": person.email, "password": person.password}
        )
        r.raise_for_status()
        body = r.json()
        csrf = {"x-csrf-token": body["csrf_token"]}
        if body["mfa_enrollment_required"]:
            import pyotp

            r = await http.post("/api/v1/auth/mfa/totp/begin", headers=csrf)
            r.raise_for_status()
            code = pyotp.TOTP(r.json()["secret"]).now()
            r = await http.post("/api/v1/auth/mfa/totp/confirm", headers=csrf, json={"code": code})
            r.raise_for_status()
        if body["password_change_required"]:
            new = "w1 bench " + secrets.token_urlsafe(18)
            r = await http.post(
                "/api/v1/auth/password",
                headers=csrf,
                json={"current_password": person.password, "new_password": new},
            )
            if r.status_code != 204:
                raise RuntimeError(f"password change failed: {r.status_code} {r.text[:200]}")
            person.password = new
        r = await http.post(
            "/api/v1/tokens",
            headers=csrf,
            json={"name": "w1", "project_ids": [str(project_id)], "max_role": person.role},
        )
        if r.status_code != 201:
            raise RuntimeError(f"token creation failed: {r.status_code} {r.text[:200]}")
        return str(r.json()["token"])


# -- the workload ------------------------------------------------------------------------------


@dataclass
class Stats:
    next_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    annotations: int = 0
    empty: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, exc: LabelVaultClientError) -> None:
        key = f"{exc.status} {exc.code}"
        self.errors[key] = self.errors.get(key, 0) + 1


class LeanHTTP:
    """A minimal HTTP/1.1 keep-alive client over TLS (asyncio streams), the default load
    generator: the annotators share the server's two cores here, and httpx spends about as much
    CPU per request as the server does (``--client sdk`` runs the same loop through
    ``labelvault.client.AsyncClient`` instead). Requests and responses are checked, not trusted:
    any status other than the expected one is counted as an error."""

    def __init__(self, url: str, verify: ssl.SSLContext, token: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 443
        self.verify = verify
        self.auth = f"Bearer {token}".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> LeanHTTP:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.verify, server_hostname=self.host
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self.writer.wait_closed()

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nhost: "
            + self.host.encode()
            + b"\r\nauthorization: "
            + self.auth
            + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError("unexpected chunked response")
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload


async def annotator(
    url: str,
    verify: ssl.SSLContext,
    token: str,
    project: uuid.UUID,
    deadline: float,
    stats: Stats,
    seed: int,
    client: str,
) -> None:
    if client == "sdk":
        await annotator_sdk(url, verify, token, project, deadline, stats, seed)
        return
    rng = random.Random(seed)
    base = f"/api/v1/projects/{project}"
    async with LeanHTTP(url, verify, token) as lv:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            status, body = await lv.post(f"{base}/tasks/next")
            t1 = time.perf_counter()
            if status == 204:
                stats.empty += 1
                return
            if status != 200:
                stats.errors[f"next {status}"] = stats.errors.get(f"next {status}", 0) + 1
                continue
            stats.next_s.append(t1 - t0)
            task_id = json.loads(body)["task_id"]
            answer = json.dumps({"result": {"labels": [rng.choice(LABELS)]}}).encode()
            status, body = await lv.post(f"{base}/tasks/{task_id}/annotation", answer)
            if status != 200:
                stats.errors[f"submit {status}"] = stats.errors.get(f"submit {status}", 0) + 1
                continue
            stats.submit_s.append(time.perf_counter() - t1)
            stats.annotations += 1


async def annotator_sdk(
    url: str,
    verify: ssl.SSLContext | bool,
    token: str,
    project: uuid.UUID,
    deadline: float,
    stats: Stats,
    seed: int,
) -> None:
    rng = random.Random(seed)
    async with AsyncClient(url, token, verify=verify, timeout=60) as lv:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                task = await lv.next_task(project)
            except LabelVaultClientError as exc:
                stats.error(exc)
                continue
            t1 = time.perf_counter()
            stats.next_s.append(t1 - t0)
            if task is None:
                stats.empty += 1
                return
            try:
                await lv.submit(project, task.task_id, {"labels": [rng.choice(LABELS)]})
            except LabelVaultClientError as exc:
                stats.error(exc)
                continue
            stats.submit_s.append(time.perf_counter() - t1)
            stats.annotations += 1


def export_routes(url: str, verify: ssl.SSLContext | bool) -> bool:
    r = httpx.get(f"{url}/api/v1/openapi.json", verify=verify, timeout=30)
    if r.status_code != 200:
        return False
    paths = r.json().get("paths", {})
    return any(p.endswith("/exports") for p in paths) and any(p.endswith("/approve") for p in paths)


def run_export(
    url: str,
    verify: str | bool,
    owner_token: str,
    manager_token: str,
    project: uuid.UUID,
    out_dir: Path,
) -> dict[str, Any]:
    started = time.monotonic()
    with (
        Client(url, owner_token, verify=verify, timeout=600) as owner,
        Client(url, manager_token, verify=verify, timeout=600) as manager,
    ):
        export = owner.request_export(project, "jsonl", only_accepted=False)
        status = owner.export_status(project, export.export_id)
        if not status.ready:
            manager.approve_export(project, export.export_id)
        owner.wait_for_export(project, export.export_id, max_wait=1800, interval=0.25)
        ready_s = time.monotonic() - started
        got = owner.download_export(project, export.export_id, out_dir / "export.out")
    return {
        "export_s": round(time.monotonic() - started, 3),
        "export_ready_s": round(ready_s, 3),
        "export_bytes": got.bytes,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "config": {
            "items": args.items,
            "annotators": args.annotators,
            "seconds": args.seconds,
            "mode": "remote" if args.url else "local-subprocess",
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "http": "HTTP/1.1 keep-alive, one connection per annotator",
            "client": args.client,
            "server_workers": None if args.url else args.server_workers,
            "note": "client and server share this host" if not args.url else None,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    }
    root = Path(tempfile.mkdtemp(prefix="lv-w1-"))
    server: LocalServer | None = None
    sampler: RssSampler | None = None
    try:
        if args.url:
            spec = json.loads(await asyncio.to_thread(Path(args.token_file).read_text))
            url, verify = args.url, (str(args.ca_file) if args.ca_file else True)
            project = uuid.UUID(spec["project_id"])
            owner_token, manager_token = spec["data_owner"], spec["manager"]
            tokens = list(spec["annotators"])[: args.annotators]
            sampler = RssSampler(args.server_pid, None)
        else:
            server = LocalServer(root, args.server_workers)
            out["server_start_s"] = round(server.wait_ready(), 2)
            url = server.url
            ctx = ssl.create_default_context(cafile=str(server.ca_file))
            verify = str(server.ca_file)
            sampler = RssSampler(server.proc.pid, server.data_dir.resolve() / "pg")
            if export_routes(url, ctx):
                server.start_worker()  # warm before the export is requested
                assert server.worker is not None
                sampler.worker_pid = server.worker.pid
            t = time.monotonic()
            project, people = await provision(server, args.annotators)
            for p in people:
                p.token = await token_over_http(url, ctx, p, project)
            out["setup_s"] = round(time.monotonic() - t, 2)
            owner_token = next(p.token for p in people if p.role == "data_owner")
            manager_token = next(p.token for p in people if p.role == "manager")
            tokens = [p.token for p in people if p.role == "annotator"]
            with Client(url, manager_token, verify=verify) as manager:
                manager.set_label_schema(project, SCHEMA)
        threading.Thread(target=sampler.run, daemon=True).start()

        # import
        data = root / "items.jsonl"
        size = write_items(data, args.items)
        with Client(url, owner_token, verify=verify, timeout=1800) as owner:
            t = time.monotonic()
            report = owner.import_file(project, data)
            import_s = time.monotonic() - t
        out["import"] = {
            "items_added": report.items_added,
            "bytes": size,
            "seconds": round(import_s, 3),
        }
        out["import_items_per_s"] = round(report.items_added / import_s, 1)

        # annotate
        stats = Stats()
        meter = CpuMeter(
            server.proc.pid if server else args.server_pid,
            server.data_dir.resolve() / "pg" if server else None,
        )
        meter.begin()
        t = time.monotonic()
        deadline = t + args.seconds
        await asyncio.gather(
            *(
                annotator(
                    url,
                    ssl.create_default_context(cafile=verify)
                    if isinstance(verify, str)
                    else ssl.create_default_context(),
                    tok,
                    project,
                    deadline,
                    stats,
                    i,
                    args.client,
                )
                for i, tok in enumerate(tokens)
            )
        )
        elapsed = time.monotonic() - t
        # where the CPU went (server, postgres, this client, the whole machine) while annotating
        out["annotate_cpu"] = meter.report(elapsed, stats.annotations)
        out["annotations"] = stats.annotations
        out["annotate_s"] = round(elapsed, 2)
        out["annotations_per_s"] = round(stats.annotations / elapsed, 1)
        out["next_task_ms"] = percentiles(stats.next_s)
        out["submit_ms"] = percentiles(stats.submit_s)
        out["errors"] = stats.errors
        out["ran_out_of_tasks"] = stats.empty > 0

        # export
        if export_routes(
            url, verify if isinstance(verify, bool) else ssl.create_default_context(cafile=verify)
        ):
            try:
                out.update(run_export(url, verify, owner_token, manager_token, project, root))
            except LabelVaultClientError as exc:
                out["export_s"] = None
                out["export_error"] = str(exc)
        else:
            out["export_s"] = None
            out["export_reason"] = "export routes (POST /exports ...) are not on this server"
        out.update(sampler.report())
        out["config"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if sampler is not None:
            sampler.stop.set()
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--url", help="an existing server (with --token-file)")
    parser.add_argument("--token-file", help="remote: JSON with project_id and role tokens")
    parser.add_argument("--ca-file", help="remote: CA certificate of a self-signed server")
    parser.add_argument("--server-pid", type=int, help="remote on this host: its pid for RSS")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--server-workers",
        type=int,
        default=2,
        help="local server: worker processes (labelvault serve --workers), default 2",
    )
    parser.add_argument(
        "--client",
        choices=["lean", "sdk"],
        default="lean",
        help="annotators' HTTP client: a minimal HTTP/1.1 one (default) or the SDK (httpx)",
    )
    args = parser.parse_args()
    if args.url and not args.token_file:
        parser.error("--url needs --token-file")
    from labelvault.server import event_loop_factory

    # uvloop on the client side too: the clients share the two cores with the server
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        print(json.dumps(runner.run(bench(args))))


if __name__ == "__main__":
    main()
