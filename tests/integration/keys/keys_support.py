"""Helpers of the key-management tests: projects filled with encrypted rows and blobs, the real
CLI in a subprocess, and searching raw bytes for plaintext."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.platform import (
    cli_env,  # noqa: F401 - re-exported
    make_org,
    make_project,
)

from labelvault.db.context import ProjectContext
from labelvault.keys.values import ProjectCipher, project_cipher
from labelvault.platform import Platform

SYSTEM_CTX = ProjectContext(None, "system")
LABELVAULT = str(Path(sys.executable).with_name("labelvault"))


def marker() -> str:
    return f"LVMARK{secrets.token_hex(16)}"


def forms(mark: str) -> list[bytes]:
    """The marker as it could appear at rest: raw, hex (bytea text output), base64 at each of
    the three alignments."""
    raw = mark.encode()
    out = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for j in range(3):
        part = raw[j:]
        part = part[: len(part) - len(part) % 3]
        out.append(base64.b64encode(part))
    return out


def find_any(data: bytes, needles: Iterable[bytes]) -> bytes | None:
    for n in needles:
        if n in data:
            return n
    return None


@dataclass
class Filled:
    project_id: uuid.UUID
    org_id: uuid.UUID
    mark: str
    # (table, id column, row id, column) -> plaintext
    values: dict[tuple[str, str, str, str], bytes] = field(default_factory=dict)
    # (table, row id) -> (blob id, plaintext)
    blobs: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        return sorted({k[2] for k in self.values if k[0] == "items"})


def _text(mark: str, n: int = 400) -> bytes:
    filler = secrets.token_urlsafe(n)[: n - len(mark) - 2]
    return f"{filler[: n // 3]} {mark} {filler[n // 3 :]}".encode()


async def new_project(
    platform: Platform, org_id: uuid.UUID | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    if org_id is None:
        org_id = (await make_org(platform)).id
    return (await make_project(platform, org_id)).id, org_id


async def fill_project(
    platform: Platform,
    project_id: uuid.UUID,
    org_id: uuid.UUID,
    *,
    items: int = 3,
    blob_items: int = 1,
    mark: str | None = None,
    blob_size: int = 150_000,
) -> Filled:
    """Rows in every encrypted column of PROJECT_COLUMNS (and blobs of PROJECT_BLOBS), each
    plaintext holding the marker, written as ``system`` through the real cipher."""
    mark = mark or marker()
    filled = Filled(project_id, org_id, mark)
    cipher = await project_cipher(platform.keys, project_id)
    annotator, reviewer, owner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def put(table: str, id_col: str, row: uuid.UUID, column: str, plain: bytes) -> bytes:
        filled.values[(table, id_col, str(row), column)] = plain
        return cipher.encrypt(table, row, column, plain)

    rows: list[tuple[str, list[Any]]] = []
    for n in range(items):
        item, task, ann, rev = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        blob_id = None
        if n < blob_items:
            body = _text(mark, 1000) * (blob_size // 1000)
            blob_id = await asyncio.to_thread(
                cipher.put_blob, platform.blobs, "items", item, iter([body])
            )
            filled.blobs[("items", str(item))] = (blob_id, body)
        meta = f'{{"source": "{mark}", "n": {n}}}'.encode()
        rows += [
            (
                "INSERT INTO items (id, kind, content, meta, dedup_key, created_by, blob_id) "
                "VALUES (%s, 'text', %s, %s, %s, %s, %s)",
                [
                    item,
                    put("items", "id", item, "content", _text(mark)),
                    put("items", "id", item, "meta", meta),
                    secrets.token_bytes(32),
                    owner,
                    blob_id,
                ],
            ),
            ("INSERT INTO tasks (id, item_id) VALUES (%s, %s)", [task, item]),
            (
                "INSERT INTO annotations (id, task_id, item_id, annotator, result, state) "
                "VALUES (%s, %s, %s, %s, %s, 'submitted')",
                [
                    ann,
                    task,
                    item,
                    annotator,
                    put("annotations", "id", ann, "result", f'{{"label": "{mark}"}}'.encode()),
                ],
            ),
            (
                "INSERT INTO reviews (id, annotation_id, annotator, reviewer, comment, "
                "corrected_result) VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    rev,
                    ann,
                    annotator,
                    reviewer,
                    put("reviews", "id", rev, "comment", _text(mark, 120)),
                    put("reviews", "id", rev, "corrected_result", f'["{mark}"]'.encode()),
                ],
            ),
            (
                "INSERT INTO gold_answers (item_id, result) VALUES (%s, %s)",
                [item, put("gold_answers", "item_id", item, "result", f'"{mark}"'.encode())],
            ),
        ]
    export = uuid.uuid4()
    export_body = _text(mark, 5000)
    export_blob = await asyncio.to_thread(
        cipher.put_blob, platform.blobs, "exports", export, [export_body[:777], export_body[777:]]
    )
    filled.blobs[("exports", str(export))] = (export_blob, export_body)
    rows.append(
        (
            "INSERT INTO exports (id, requested_by, format, state, blob_id) "
            "VALUES (%s, %s, 'jsonl', 'ready', %s)",
            [export, owner, export_blob],
        )
    )
    imported = uuid.uuid4()
    rows.append(
        (
            "INSERT INTO imports (id, created_by, format, rejected, report) "
            "VALUES (%s, %s, 'zip', 1, %s)",
            [
                imported,
                owner,
                put("imports", "id", imported, "report", f'[{{"reason": "{mark}.png"}}]'.encode()),
            ],
        )
    )
    async with platform.db.project_tx(project_id, SYSTEM_CTX) as conn:
        for statement, params in rows:
            await conn.execute(statement, params)
    return filled


async def read_value(
    platform: Platform, project_id: uuid.UUID, table: str, id_col: str, row: str, column: str
) -> bytes:
    async with platform.db.project_tx(project_id, SYSTEM_CTX) as conn:
        cur = await conn.execute(
            f"SELECT {column} FROM {table} WHERE {id_col} = %s", [uuid.UUID(row)]
        )
        found = await cur.fetchone()
    assert found is not None, (table, row)
    return bytes(found[0])


async def check_all_readable(
    platform: Platform, filled: Filled, cipher: ProjectCipher | None = None
) -> None:
    cipher = cipher or await project_cipher(platform.keys, filled.project_id)
    for (table, id_col, row, column), plain in filled.values.items():
        stored = await read_value(platform, filled.project_id, table, id_col, row, column)
        assert cipher.decrypt(table, row, column, stored) == plain

    def blob(table: str, row: str, blob_id: str) -> bytes:
        assert cipher is not None
        return b"".join(cipher.get_blob(platform.blobs, table, row, blob_id))

    for (table, row), (blob_id, plain) in filled.blobs.items():
        assert await asyncio.to_thread(blob, table, row, blob_id) == plain


async def stored_versions(platform: Platform, filled: Filled) -> set[int]:
    from labelvault.crypto import peek_blob_key_version, peek_key_version

    versions = set()
    for table, id_col, row, column in filled.values:
        stored = await read_value(platform, filled.project_id, table, id_col, row, column)
        versions.add(peek_key_version(stored))
    for (_, _), (blob_id, _) in filled.blobs.items():
        head = next(iter(platform.blobs.get(filled.project_id, blob_id)))
        versions.add(peek_blob_key_version(head))
    return versions


# -- the real CLI ----------------------------------------------------------------------------


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LABELVAULT, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LABELVAULT, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _, files in os.walk(root):
        for name in files:
            yield Path(dirpath) / name
