"""``labelvault audit verify``: check every audit chain straight from a database.

Works on any PostgreSQL holding a LabelVault database (the live one, or a dump restored
anywhere), through a DSN whose role sees every row (a superuser or a BYPASSRLS role; a role
subject to row-level security is reported, since hidden rows would look like deletions). Reads
happen in one REPEATABLE READ, READ ONLY transaction: one consistent snapshot.

For each chain (``control`` and ``project:<uuid>``) it streams the events through
:func:`labelvault.audit.verify.verify_chain` together with every checkpoint it knows:

* the notes in ``lv_control.audit_checkpoints``, whose signatures must verify with the given
  public keys (default: the keys recorded in ``lv_control.signing_keys``; give ``public_keys``
  so that the database is not trusted for the key);
* the notes of an external checkpoint directory (``<dir>/<chain id>/<size>.note``) when given:
  a note there that is missing or different in the database, or a chain shorter than one of
  them, means the trail was truncated or rewritten.

Also checks, on the control chain, that the ``org_id`` column (used for row-level security)
agrees with the event body. Never raises on tampering: everything goes into the report.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg

from labelvault.audit.chain import EventRow
from labelvault.audit.checkpoint import Checkpoint, CheckpointError, parse_and_verify
from labelvault.audit.checkpointer import (
    CONTROL_CHAIN,
    origin_for,
    project_chain_id,
    project_of_chain,
    region_of_origin,
)
from labelvault.audit.signing import verifier_key_string
from labelvault.audit.verify import (
    DEFAULT_MAX_PROBLEMS,
    Problem,
    ProblemKind,
    VerificationReport,
    verify_chain,
)
from labelvault.kernel.errors import InvalidInputError, ServiceUnavailableError

FETCH_ROWS: Final = 20_000


@dataclass(slots=True)
class DatabaseReport:
    chains: list[VerificationReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # not tied to one chain

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.chains)

    def all_problems(self) -> list[tuple[str, Problem]]:
        out = [("", p) for p in self.problems]
        for r in self.chains:
            out.extend((r.chain_id, p) for p in r.problems)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [_problem_dict(p) for p in self.problems],
            "chains": [report_dict(r) for r in self.chains],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _problem_dict(p: Problem) -> dict[str, Any]:
    return {"seq": p.seq, "kind": p.kind.value, "message": p.message}


def report_dict(r: VerificationReport) -> dict[str, Any]:
    return {
        "chain_id": r.chain_id,
        "ok": r.ok,
        "events_checked": r.events_checked,
        "checkpoints_checked": r.checkpoints_checked,
        "anchored_size": r.anchored_size,
        "head_seq": r.head_seq,
        "head_hash": r.head_hash.hex(),
        "problems": [_problem_dict(p) for p in r.problems],
        "problems_omitted": r.problems_omitted,
    }


def load_public_keys(values: list[str]) -> list[str]:
    """``--public-key`` values: a verifier key, or ``@path`` of a file with one key a line."""
    from labelvault.audit.checkpoint import parse_verifier_key

    keys: list[str] = []
    for value in values:
        if value.startswith("@"):
            try:
                text = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidInputError(
                    f"cannot read public key file {value[1:]}: {exc.strerror}"
                ) from None
            lines = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            lines = [value.strip()]
        for line in lines:
            try:
                parse_verifier_key(line)
            except CheckpointError as exc:
                raise InvalidInputError(f"bad public key: {exc.message}") from None
            keys.append(line)
    if values and not keys:
        raise InvalidInputError("no public key given")
    return keys


# -- checkpoints ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Notes:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    region: str | None = None


def _parse(note: str, keys: list[str], where: str, size: int, out: _Notes) -> Checkpoint | None:
    try:
        cp = parse_and_verify(note, keys)
    except CheckpointError as exc:
        out.problems.append(
            Problem(
                size, ProblemKind.CHECKPOINT_SIGNATURE, f"{where} at size {size}: {exc.message}"
            )
        )
        return None
    if cp.size != size:
        out.problems.append(
            Problem(
                size,
                ProblemKind.CHECKPOINT_SIGNATURE,
                f"{where} at size {size} is a signed note for size {cp.size}",
            )
        )
        return None
    return cp


def directory_notes(directory: Path, chain_id: str) -> dict[int, str]:
    """The ``<size>.note`` files of one chain in an external checkpoint directory."""
    chain_dir = directory / chain_id
    notes: dict[int, str] = {}
    if not chain_dir.is_dir():
        return notes
    for path in chain_dir.iterdir():
        stem, dot, ext = path.name.partition(".")
        if ext != "note" or not dot or not stem.isdigit() or str(int(stem)) != stem:
            continue
        notes[int(stem)] = path.read_bytes().decode("utf-8", errors="replace")
    return notes


def collect_checkpoints(
    chain_id: str,
    db_notes: dict[int, str],
    dir_notes: dict[int, str] | None,
    keys: list[str],
) -> _Notes:
    out = _Notes()
    for size in sorted(db_notes):
        cp = _parse(db_notes[size], keys, "database checkpoint", size, out)
        if cp is not None:
            out.checkpoints.append(cp)
    for size in sorted(dir_notes or {}):
        assert dir_notes is not None
        note = dir_notes[size]
        if size not in db_notes:
            out.problems.append(
                Problem(
                    size,
                    ProblemKind.CHECKPOINT_MISSING,
                    f"checkpoint at size {size} is in the directory but not in the database",
                )
            )
        elif db_notes[size] != note:
            out.problems.append(
                Problem(
                    size,
                    ProblemKind.CHECKPOINT_DIFFERS,
                    f"checkpoint at size {size} differs between the directory and the database",
                )
            )
        else:
            continue  # identical: already checked
        cp = _parse(note, keys, "directory checkpoint", size, out)
        if cp is not None:
            out.checkpoints.append(cp)
    for cp in out.checkpoints:
        region = region_of_origin(cp.origin, chain_id)
        if region is not None:
            out.region = region
            break
    return out


# -- events --------------------------------------------------------------------------------------


def _rows(
    conn: psycopg.Connection[Any], table: str, *, with_org: bool, problems: list[Problem]
) -> Iterator[EventRow]:
    cols = "seq, ts_us, body, leaf, prev_hash, chain_hash" + (", org_id" if with_org else "")
    # keyset pages on the primary key (inside the one REPEATABLE READ snapshot): a client-side
    # binary cursor per page is several times faster than a server-side cursor
    sql = f"SELECT {cols} FROM {table} WHERE seq {{}} %s ORDER BY seq LIMIT {FETCH_ROWS}"
    cur = conn.cursor(binary=True)
    op, last = ">=", -(2**63)
    while True:
        cur.execute(sql.format(op), [last])
        batch = cur.fetchall()
        if not batch:
            return
        if with_org:
            yield from _org_checked(batch, problems)
        else:
            yield from batch  # (seq, ts_us, body, leaf, prev_hash, chain_hash) tuples
        op, last = ">", batch[-1][0]
        if len(batch) < FETCH_ROWS:
            return


def _org_checked(batch: list[Any], problems: list[Problem]) -> Iterator[EventRow]:
    for seq, ts, body, leaf, prev, chain, org in batch:
        try:
            claimed = json.loads(body).get("org_id")
        except (ValueError, AttributeError, RecursionError):
            claimed = None  # unreadable (or absurdly nested) body: reported, never a crash
        if (str(org) if org is not None else None) != claimed and len(problems) < 1000:
            problems.append(
                Problem(
                    seq,
                    ProblemKind.ORG_MISMATCH,
                    f"seq {seq}: org_id column differs from the event's org_id",
                )
            )
        yield seq, ts, body, leaf, prev, chain


# -- the database --------------------------------------------------------------------------------


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, connect_timeout=15)
    except psycopg.OperationalError as exc:
        from labelvault.logs import redact_text

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"cannot connect to the database: {redact_text(first)}"
        raise ServiceUnavailableError(message) from None
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _chains(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """chain id → project status (None for the control chain and unknown chains)."""
    chains: dict[str, str | None] = {CONTROL_CHAIN: None}
    for pid, status in conn.execute("SELECT id, status FROM lv_control.projects ORDER BY id"):
        chains[project_chain_id(pid)] = status
    for (chain_id,) in conn.execute("SELECT DISTINCT chain_id FROM lv_control.audit_checkpoints"):
        chains.setdefault(chain_id, None)
    return chains


def _table_of(conn: psycopg.Connection[Any], chain_id: str) -> str | None:
    from labelvault.db.names import project_schema

    pid = project_of_chain(chain_id)
    if chain_id == CONTROL_CHAIN:
        table = "lv_control.audit_events"
    elif pid is not None:
        table = f"{project_schema(pid)}.audit_events"
    else:
        return None
    row = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()
    return table if row and row[0] is not None else None


def verify_database(
    dsn: str,
    *,
    project: uuid.UUID | None = None,
    checkpoint_dir: Path | None = None,
    public_keys: list[str] | None = None,
    region: str | None = None,
    check_bodies: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
) -> DatabaseReport:
    """Verify every chain of the database (or one project's); see the module docstring."""
    report = DatabaseReport()
    with _connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user"
        ).fetchone()
        if row is None or not row[1]:
            report.problems.append(
                Problem(
                    None,
                    ProblemKind.READER,
                    "the database role is subject to row-level security: rows may be hidden; "
                    "connect as a superuser or a BYPASSRLS role",
                )
            )
        if public_keys is None:
            keys = [
                verifier_key_string(name, bytes(pk))
                for name, pk in conn.execute(
                    "SELECT name, public_key FROM lv_control.signing_keys ORDER BY name"
                )
            ]
        else:
            keys = list(public_keys)
        chains = _chains(conn)
        if project is not None:
            wanted = project_chain_id(project)
            if wanted not in chains and not (checkpoint_dir and (checkpoint_dir / wanted).is_dir()):
                raise InvalidInputError(f"no audit chain for project {project}")
            chains = {wanted: chains.get(wanted)}
        elif checkpoint_dir is not None and checkpoint_dir.is_dir():
            for sub in sorted(checkpoint_dir.iterdir()):
                if sub.is_dir() and (sub.name == CONTROL_CHAIN or project_of_chain(sub.name)):
                    chains.setdefault(sub.name, None)
        for chain_id, status in chains.items():
            db_notes = {
                int(size): note
                for size, note in conn.execute(
                    "SELECT size, note FROM lv_control.audit_checkpoints WHERE chain_id = %s",
                    [chain_id],
                )
            }
            dir_notes = directory_notes(checkpoint_dir, chain_id) if checkpoint_dir else None
            notes = collect_checkpoints(chain_id, db_notes, dir_notes, keys)
            chain_region = region or notes.region or "unknown"
            table = _table_of(conn, chain_id)
            if table is None:
                if status == "deleted" and not db_notes and not dir_notes:
                    continue
                chain_report = VerificationReport(chain_id)
                chain_report.problems.append(
                    Problem(
                        None, ProblemKind.CHAIN_MISSING, f"the events table of {chain_id} is gone"
                    )
                )
                chain_report.problems.extend(notes.problems)
                report.chains.append(chain_report)
                continue
            extra: list[Problem] = []
            events = _rows(conn, table, with_org=chain_id == CONTROL_CHAIN, problems=extra)
            chain_report = verify_chain(
                chain_id,
                events,
                notes.checkpoints,
                expected_origin=origin_for(chain_region, chain_id),
                check_bodies=check_bodies,
                max_problems=max_problems,
            )
            chain_report.problems.extend(notes.problems)
            chain_report.problems.extend(extra)
            if not notes.checkpoints and (db_notes or dir_notes):
                pass  # every note failed: already reported as checkpoint_signature
            report.chains.append(chain_report)
        conn.rollback()
    return report


def format_text(report: DatabaseReport) -> str:
    lines: list[str] = []
    for p in report.problems:
        lines.append(f"FAIL {p.kind.value}: {p.message}")
    for r in report.chains:
        state = "ok  " if r.ok else "FAIL"
        lines.append(
            f"{state} {r.chain_id}: {r.events_checked} events, {r.checkpoints_checked} "
            f"checkpoint checks, signed up to {r.anchored_size}"
        )
        for p in r.problems:
            where = f"seq {p.seq}" if p.seq is not None else "-"
            lines.append(f"     {r.chain_id} {where} {p.kind.value}: {p.message}")
        if r.problems_omitted:
            lines.append(f"     ... and {r.problems_omitted} more problems")
    lines.append("audit trail verifies" if report.ok else "AUDIT TRAIL DOES NOT VERIFY")
    return "\n".join(lines)
