"""Signing checkpoints of every audit chain (DESIGN invariant 5).

For the control chain and every active project chain whose size grew since its last checkpoint,
:func:`checkpoint_all` signs a C2SP checkpoint note::

    labelvault/<region>/<chain id>
    <size>
    <base64 RFC 9162 root over the first <size> leaf hashes>
    labelvault-chain-head <size> <base64 chain_hash of event <size>> <its ts_us>
    labelvault-merkle-range <base64 subtree root> ...

    — labelvault-<region> <base64(key ID || Ed25519 signature)>

stores it in ``lv_control.audit_checkpoints`` and, when ``audit_checkpoint_dir`` is set, writes it
to ``<dir>/<chain id>/<size>.note`` (mode 0644, atomically, never overwriting).

Incremental, O(new events): the ``labelvault-merkle-range`` line carries the Merkle accumulator
state (the roots of the complete subtrees that make up the tree, largest first: one per set bit
of the size), inside the signed body. The next run verifies the previous note's signature,
checks that the range really combines to the signed root, then reads only the leaves after it.
So no extra table is needed, restarts and several servers cost nothing, and a chain of 100k (or
100M) events is never re-read. When the previous note is unusable it recomputes from seq 1.

Before signing, the new segment is checked to link to the previous checkpoint's chain head
(contiguous seq, ``prev_hash`` = previous ``chain_hash``, link hashes recompute): the
checkpointer never signs over a chain that is already broken, it logs an error instead and
``labelvault audit verify`` tells exactly what is wrong.

The server's periodic run skips the project chains nobody wrote to since its last visit
(:class:`ChainActivity`), so an idle project's pool is not opened every few minutes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from psycopg import AsyncConnection

from labelvault.audit.chain import genesis_hash
from labelvault.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    Signer,
    chain_head_extension,
    parse_and_verify,
    sign_checkpoint,
)
from labelvault.audit.merkle import MerkleAccumulator
from labelvault.kernel.periodic import every, jitter
from labelvault.logs import get_logger

if TYPE_CHECKING:
    from labelvault.platform import Platform

CONTROL_CHAIN: Final = "control"
PROJECT_CHAIN_PREFIX: Final = "project:"
ORIGIN_PREFIX: Final = "labelvault"
RANGE_KEYWORD: Final = "labelvault-merkle-range"
READ_BATCH: Final = 50_000
_INT8X2: Final = struct.Struct(">qq")

log = get_logger(__name__)


class ChainBrokenError(Exception):
    """The segment to checkpoint does not link to the previous checkpoint: refuse to sign."""


def project_chain_id(project_id: uuid.UUID) -> str:
    return f"{PROJECT_CHAIN_PREFIX}{project_id}"


def project_of_chain(chain_id: str) -> uuid.UUID | None:
    if not chain_id.startswith(PROJECT_CHAIN_PREFIX):
        return None
    try:
        return uuid.UUID(chain_id[len(PROJECT_CHAIN_PREFIX) :])
    except ValueError:
        return None


def origin_for(region: str, chain_id: str) -> str:
    return f"{ORIGIN_PREFIX}/{region}/{chain_id}"


def region_of_origin(origin: str, chain_id: str) -> str | None:
    """The region of ``labelvault/<region>/<chain_id>``, or None if it is not of that form."""
    prefix, suffix = f"{ORIGIN_PREFIX}/", f"/{chain_id}"
    if origin.startswith(prefix) and origin.endswith(suffix):
        region = origin[len(prefix) : -len(suffix)]
        if region and "/" not in region:
            return region
    return None


def range_extension(stack: Iterable[bytes]) -> str:
    parts = [base64.b64encode(h).decode("ascii") for h in stack]
    return " ".join([RANGE_KEYWORD, *parts])


def accumulator_of(cp: Checkpoint) -> MerkleAccumulator | None:
    """The Merkle state carried by a verified checkpoint, if present and consistent."""
    for line in cp.extensions:
        fields = line.split(" ")
        if fields[0] != RANGE_KEYWORD:
            continue
        try:
            stack = [base64.b64decode(f, validate=True) for f in fields[1:]]
            acc = MerkleAccumulator.from_state(cp.size, stack)
        except ValueError:
            return None
        return acc if acc.root() == cp.root else None
    return None


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    chain_id: str
    size: int
    note: str
    file: Path | None = None
    stored: bool = True  # False: an identical note was already there


@dataclass(frozen=True, slots=True)
class _Start:
    size: int
    head: bytes
    ts_us: int
    acc: MerkleAccumulator


# -- reading a chain -----------------------------------------------------------------------------


async def chain_head(conn: AsyncConnection[Any], table: str) -> int:
    cur = await conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table}")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def extend_segment(
    conn: AsyncConnection[Any], table: str, start: _Start, upto: int
) -> tuple[MerkleAccumulator, bytes, int]:
    """Read events ``start.size+1 .. upto``, check they link on, add their leaves.

    Returns (accumulator, chain hash of ``upto``, its ts_us); raises ChainBrokenError.
    """
    acc, prev, prev_ts, expected = start.acc, start.head, start.ts_us, start.size + 1
    empty = hashlib.sha256()
    pack = _INT8X2.pack
    while expected <= upto:
        cur = conn.cursor(binary=True)
        await cur.execute(
            f"SELECT seq, ts_us, leaf, prev_hash, chain_hash FROM {table} "
            "WHERE seq >= %s AND seq <= %s ORDER BY seq LIMIT %s",
            [expected, upto, READ_BATCH],
        )
        rows = await cur.fetchall()
        if not rows:
            raise ChainBrokenError(f"events {expected}..{upto} are missing")
        leaves: list[bytes] = []
        for seq, ts, leaf, prev_hash, chain_hash in rows:
            h = empty.copy()
            h.update(prev_hash)
            h.update(pack(seq, ts))
            h.update(leaf)
            if seq != expected or prev_hash != prev or h.digest() != chain_hash or ts < prev_ts:
                raise ChainBrokenError(f"the chain does not link at seq {expected}")
            leaves.append(bytes(leaf))
            prev, prev_ts, expected = bytes(chain_hash), ts, expected + 1
        acc.extend(leaves)
    return acc, prev, prev_ts


# -- where to start from -------------------------------------------------------------------------


async def _last_checkpoints(
    platform: Platform, chain_id: str, verifier_keys: list[str]
) -> tuple[_Start, set[int]]:
    from labelvault.db.context import ControlContext

    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT size, note FROM lv_control.audit_checkpoints WHERE chain_id = %s "
            "ORDER BY size DESC LIMIT 8",
            [chain_id],
        )
        rows = await cur.fetchall()
    sizes = {int(size) for size, _ in rows}
    for _, note in rows:
        try:
            cp = parse_and_verify(note, verifier_keys)
        except CheckpointError:
            continue
        acc = accumulator_of(cp)
        if acc is not None and cp.origin.endswith(f"/{chain_id}"):
            return _Start(cp.size, cp.chain_head, cp.ts_us, acc), sizes
    return _Start(0, genesis_hash(chain_id), 0, MerkleAccumulator()), sizes


# -- storing -------------------------------------------------------------------------------------


def write_note_file(directory: Path, chain_id: str, size: int, note: str) -> Path:
    """Write ``<dir>/<chain id>/<size>.note`` atomically; never overwrite a different note."""
    chain_dir = directory / chain_id
    chain_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    final = chain_dir / f"{size}.note"
    data = note.encode("utf-8")
    if final.exists():
        if final.read_bytes() != data:
            raise FileExistsError(f"{final} exists with a different note")
        return final
    fd, tmp = tempfile.mkstemp(prefix=f".{size}.", suffix=".tmp", dir=chain_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, final)  # atomic, and fails rather than replacing an existing file
        except FileExistsError:
            if final.read_bytes() != data:
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(chain_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return final


async def _store(platform: Platform, chain_id: str, size: int, note: str) -> bool:
    from labelvault.db.context import ControlContext

    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "INSERT INTO lv_control.audit_checkpoints (chain_id, size, note) VALUES (%s, %s, %s) "
            "ON CONFLICT (chain_id, size) DO NOTHING RETURNING size",
            [chain_id, size, note],
        )
        return await cur.fetchone() is not None


# -- one chain, all chains -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def chain_connection(platform: Platform, chain_id: str) -> Any:
    """A transaction that can read ``chain_id`` in full (system context); yields (conn, table)."""
    from labelvault.db.context import ControlContext, ProjectContext
    from labelvault.db.names import project_schema

    project_id = project_of_chain(chain_id)
    if chain_id == CONTROL_CHAIN:
        async with platform.db.control_tx(ControlContext.system_context()) as conn:
            yield conn, "lv_control.audit_events"
    elif project_id is not None:
        async with platform.db.project_tx(
            project_id, ProjectContext(None, "system"), mark_dirty=False
        ) as conn:  # reading a chain appends nothing
            yield conn, f"{project_schema(project_id)}.audit_events"
    else:
        raise ValueError(f"unknown chain id {chain_id!r}")


async def seal_chain(platform: Platform, chain_id: str) -> int:
    """Chain the committed pending events of ``chain_id`` first: a checkpoint covers them."""
    from labelvault.audit.sealer import seal_control, seal_project

    if chain_id == "control":
        return await seal_control(platform.db)
    return await seal_project(platform.db, uuid.UUID(chain_id.split(":", 1)[1]))


async def checkpoint_chain(
    platform: Platform, chain_id: str, signer: Signer, *, verifier_keys: list[str] | None = None
) -> CheckpointResult | None:
    """Sign a checkpoint of ``chain_id`` at its current size if it grew; None if it did not."""
    keys = verifier_keys or [signer.verifier_key()]
    await seal_chain(platform, chain_id)
    start, existing = await _last_checkpoints(platform, chain_id, keys)
    async with chain_connection(platform, chain_id) as (conn, table):
        size = await chain_head(conn, table)
        if size <= start.size or size in existing:
            return None
        acc, head, ts_us = await extend_segment(conn, table, start, size)
    origin = origin_for(platform.settings.region, chain_id)
    note = sign_checkpoint(
        signer,
        origin,
        size,
        acc.root(),
        [chain_head_extension(size, head, ts_us), range_extension(acc.state()[1])],
    )
    stored = await _store(platform, chain_id, size, note)
    path = None
    directory = platform.settings.audit_checkpoint_dir
    if directory is not None:
        path = await asyncio.to_thread(write_note_file, Path(directory), chain_id, size, note)
    return CheckpointResult(chain_id, size, note, path, stored)


async def active_chains(platform: Platform) -> list[str]:
    from labelvault.db.context import ControlContext

    async with platform.db.control_tx(ControlContext.system_context()) as conn:
        cur = await conn.execute(
            "SELECT id FROM lv_control.projects WHERE status = 'active' ORDER BY created_at, id"
        )
        ids = [row[0] for row in await cur.fetchall()]
    return [CONTROL_CHAIN, *(project_chain_id(i) for i in ids)]


# rows ever inserted into each project's chain tables, from the statistics (no table is read)
_WRITE_COUNTERS = (
    "SELECT schemaname, sum(n_tup_ins)::bigint FROM pg_stat_user_tables "
    "WHERE relname IN ('audit_pending', 'audit_events') AND starts_with(schemaname, 'p_') "
    "GROUP BY schemaname"
)
# the statistics' epoch: a restart (crash, failover) or a reset starts the counters again
_STATISTICS_EPOCH = (
    "SELECT current_setting('track_counts')::boolean, pg_postmaster_start_time()::text, "
    "(SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database())"
)
# every chain is visited at least this often, whatever the statistics say
FULL_VISIT_S: Final = 3600.0


class ChainActivity:
    """The periodic checkpointer's memory of each project chain's write counters, so that a
    chain nobody wrote to since its last visit is skipped without opening its project's pool
    (every 5 minutes over hundreds of projects, those visits evicted the busy pools).

    A project chain is visited when any of these holds:

    * this process wrote to the project since the chain's last successful visit
      (``RuntimeDatabase.take_written_projects``);
    * PostgreSQL's statistics of the chain's two tables (rows inserted into ``audit_pending``
      and ``audit_events``, read for every project in one control-plane query; a commit reaches
      them within about ten seconds) differ from those of its last successful visit, which
      covers the other server processes and hosts;
    * the statistics cannot be read, are off (``track_counts``), or started again (a restart
      of PostgreSQL, a failover, a reset): every chain;
    * an hour has passed since every chain was last visited.

    The control chain is always visited; ``labelvault audit checkpoint`` visits every chain."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._pending: set[str] = set()  # written by this process, not yet visited
        self._epoch: tuple[str, str] | None = None
        self._last_full: float | None = None
        self.full = True  # this run visits every chain

    async def counters(self, platform: Platform) -> dict[str, int] | None:
        """Each project schema's counter now (None: unreadable or off); decides :attr:`full`."""
        from labelvault.db.context import ControlContext

        self._pending |= {project_chain_id(p) for p in platform.db.take_written_projects()}
        now = time.monotonic()
        self.full = self._last_full is None or now - self._last_full >= FULL_VISIT_S
        try:
            async with platform.db.control_tx(ControlContext.system_context()) as conn:
                cur = await conn.execute(_STATISTICS_EPOCH)
                row = await cur.fetchone()
                cur = await conn.execute(_WRITE_COUNTERS)
                counters = {str(schema): int(n) for schema, n in await cur.fetchall()}
        except Exception as exc:
            log.warning("audit chain statistics unreadable", error_type=type(exc).__name__)
            return None
        if row is None or not row[0]:  # statistics off: nothing to compare
            return None
        epoch = (str(row[1]), str(row[2]))
        if epoch != self._epoch:  # counters started again: every chain, once
            self._epoch, self._seen, self.full = epoch, {}, True
        if self.full:
            self._last_full = now
        return counters

    def moved(self, chain_id: str, counter: int | None) -> bool:
        return (
            self.full
            or counter is None
            or chain_id in self._pending
            or self._seen.get(chain_id) != counter
        )

    def visited(self, chain_id: str, counter: int | None) -> None:
        self._pending.discard(chain_id)
        if counter is not None:
            self._seen[chain_id] = counter


async def checkpoint_all(
    platform: Platform, *, activity: ChainActivity | None = None
) -> list[CheckpointResult]:
    """Checkpoint every chain that grew (with ``activity``: every chain written to since its
    last visit). A broken chain is logged and skipped, never signed."""
    from labelvault.audit.signing import load_signer
    from labelvault.db.names import project_schema

    signer = await load_signer(platform)
    keys = [signer.verifier_key()]
    results: list[CheckpointResult] = []
    counters = await activity.counters(platform) if activity is not None else None
    for chain_id in await active_chains(platform):
        counter = None
        project_id = project_of_chain(chain_id)
        if activity is not None and project_id is not None:
            if counters is not None:
                counter = counters.get(project_schema(project_id), 0)
            if not activity.moved(chain_id, counter):
                continue
        try:
            result = await checkpoint_chain(platform, chain_id, signer, verifier_keys=keys)
        except ChainBrokenError as exc:
            log.error("audit chain is broken; not signing it", chain_id=chain_id, problem=str(exc))
            continue
        except Exception as exc:  # one unreachable project must not stop the others
            log.error("checkpointing failed", chain_id=chain_id, error_type=type(exc).__name__)
            continue
        if activity is not None:
            activity.visited(chain_id, counter)
        if result is not None:
            results.append(result)
    return results


async def run_periodically(platform: Platform, stop_event: asyncio.Event) -> None:
    """Checkpoint every ``audit_checkpoint_interval_s`` seconds until ``stop_event`` is set.

    Start it in the server's lifespan after ``platform.open()``::

        stop = asyncio.Event()
        task = asyncio.create_task(run_periodically(platform, stop))
        ...
        stop.set(); await task          # before platform.close()

    Several servers may run it at once: notes are deterministic and stored idempotently.
    """
    interval = float(platform.settings.audit_checkpoint_interval_s)
    activity = ChainActivity()
    await every(
        interval,
        stop_event,
        lambda: checkpoint_all(platform, activity=activity),
        first=jitter(0, min(interval, 30.0)),  # spread servers that started together
        on_error=lambda exc: log.error("audit checkpointing failed", error_type=type(exc).__name__),
    )
    with contextlib.suppress(Exception):  # a final checkpoint on clean shutdown
        await asyncio.wait_for(checkpoint_all(platform, activity=activity), timeout=30)
