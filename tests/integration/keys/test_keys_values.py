"""Values and blobs of projects at rest: never plaintext, never movable, never malleable.

Everything is written through the real ProjectCipher on a real PostgreSQL and a real blob
directory, then inspected as a superuser / from the file system would see it.
"""

from __future__ import annotations

import ast
import asyncio
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests.integration.keys.keys_support import (
    SYSTEM_CTX,
    check_all_readable,
    fill_project,
    find_any,
    forms,
    marker,
    new_project,
    read_value,
    walk_files,
)

from labelvault.crypto import CryptoError, DecryptionError
from labelvault.db.bootstrap import DatabaseTarget
from labelvault.db.names import project_schema
from labelvault.keys.columns import PROJECT_COLUMNS
from labelvault.keys.testing import PlaintextCipher
from labelvault.keys.values import ProjectCipher, project_cipher
from labelvault.platform import Platform
from labelvault.settings import Settings

SRC = Path(__file__).resolve().parents[3] / "src" / "labelvault"


def _scan_database(dsn: str, needles: list[bytes]) -> tuple[int, list[str]]:
    """Every table, materialized view and TOAST table of every schema, as text, via COPY."""
    hits: list[str] = []
    scanned = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        rels = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm', 't', 'p') "
            "ORDER BY 1, 2"
        ).fetchall()
        keep = max(len(n) for n in needles)
        for schema, rel in rels:
            query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(sql.Identifier(schema, rel))
            tail = b""
            with conn.cursor() as cur, cur.copy(query) as copy:
                for chunk in copy:
                    data = tail + bytes(chunk)
                    found = find_any(data, needles)
                    if found is not None:
                        hits.append(f"{schema}.{rel}: {found[:20]!r}")
                    tail = data[-keep:]
            scanned += 1
    return scanned, hits


def _scan_files(root: Path, needles: list[bytes]) -> tuple[int, list[str]]:
    hits, scanned = [], 0
    for path in walk_files(root):
        if not path.is_file() or path.is_symlink():
            continue  # sockets, pipes
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        found = find_any(data, needles)
        if found is not None:
            hits.append(f"{path}: {found[:20]!r}")
    return scanned, hits


async def test_plaintext_never_at_rest(
    platform: Platform, db_target: DatabaseTarget, settings: Settings
) -> None:
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=4, blob_items=2)
    await check_all_readable(platform, filled)
    needles = forms(filled.mark)
    # every encrypted column is filled (a new one is added to fill_project with it), but the
    # dedup key: random bytes, made by the first import
    columns = {(c.table, c.column) for c in PROJECT_COLUMNS} - {("settings", "dedup_key")}
    assert {(t, c) for t, _, _, c in filled.values} == columns
    # positive control: the same scans do find a value stored without encryption
    control = marker()
    plain = PlaintextCipher(pid, i_know_this_is_plaintext=True)
    async with platform.db.project_tx(pid, SYSTEM_CTX) as conn:
        await conn.execute(
            "INSERT INTO items (id, kind, content, dedup_key, created_by) "
            "VALUES (%s, 'text', %s, %s, %s)",
            [
                uuid.uuid4(),
                plain.encrypt("items", "x", "content", control.encode()),
                uuid.uuid4().bytes,
                uuid.uuid4(),
            ],
        )

    scanned, hits = await asyncio.to_thread(_scan_database, db_target.owner_dsn, needles)
    assert scanned > 50  # every table of every schema, catalogs and TOAST included
    assert hits == []
    _, control_hits = await asyncio.to_thread(_scan_database, db_target.owner_dsn, forms(control))
    assert any(f"{project_schema(pid)}.items" in h for h in control_hits)

    blob_root = settings.data_dir.resolve() / "blobs"
    blob_files, hits = await asyncio.to_thread(_scan_files, blob_root, needles)
    assert blob_files >= 3 and hits == []
    assert any((blob_root / str(pid)).iterdir())

    # the whole data directory: PostgreSQL's data files, WAL and log, keys, secrets, blobs
    files, hits = await asyncio.to_thread(_scan_files, settings.data_dir.resolve(), needles)
    assert files > 100 and hits == []
    if db_target.embedded is not None:
        _, control_hits = await asyncio.to_thread(
            _scan_files, db_target.embedded.pgdata, forms(control)
        )
        assert control_hits  # in the table's data file and the WAL


async def _swap(dsn: str, statements: list[tuple[str, list[object]]]) -> None:
    def go() -> None:
        with psycopg.connect(dsn, autocommit=False) as conn:
            for q, params in statements:
                conn.execute(q.encode(), params)
            conn.commit()

    await asyncio.to_thread(go)


async def test_moved_ciphertexts_fail_clearly(
    platform: Platform, db_target: DatabaseTarget
) -> None:
    pid, org = await new_project(platform)
    other, _ = await new_project(platform, org)
    a = await fill_project(platform, pid, org, items=3, blob_items=0)
    b = await fill_project(platform, other, org, items=1, blob_items=0)
    s, t = project_schema(pid), project_schema(other)
    i1, i2, i3 = (uuid.UUID(x) for x in a.items)
    dsn = db_target.owner_dsn
    await _swap(
        dsn,
        [
            # rows: swap the content of two items
            (
                f"UPDATE {s}.items x SET content = y.content FROM {s}.items y "
                "WHERE x.id = %s AND y.id = %s",
                [i1, i2],
            ),
            # columns: meta of an item into its own content's place
            (f"UPDATE {s}.items SET content = meta WHERE id = %s", [i3]),
            # tables: an annotation's result into a gold answer
            (
                f"UPDATE {s}.gold_answers g SET result = (SELECT result FROM {s}.annotations "
                "WHERE item_id = %s) WHERE g.item_id = %s",
                [i2, i2],
            ),
            # projects: another project's item content, same row id and key version
            (
                f"UPDATE {s}.items SET content = (SELECT content FROM {t}.items LIMIT 1) "
                "WHERE id = %s",
                [i2],
            ),
        ],
    )
    cipher = await project_cipher(platform.keys, pid)
    for row, column in ((i1, "content"), (i3, "content"), (i2, "content")):
        stored = await read_value(platform, pid, "items", "id", str(row), column)
        with pytest.raises(DecryptionError) as info:
            cipher.decrypt("items", row, column, stored)
        message = info.value.message
        assert f"items.{column} of row {row}" in message
        assert "failed authentication" in message
    gold = await read_value(platform, pid, "gold_answers", "item_id", str(i2), "result")
    with pytest.raises(DecryptionError):
        cipher.decrypt("gold_answers", i2, "result", gold)
    # the untouched values of both projects still read
    assert (
        cipher.decrypt(
            "items", i1, "meta", await read_value(platform, pid, "items", "id", str(i1), "meta")
        )
        == a.values[("items", "id", str(i1), "meta")]
    )
    await check_all_readable(platform, b)


async def test_one_flipped_bit_fails(platform: Platform, db_target: DatabaseTarget) -> None:
    pid, org = await new_project(platform)
    filled = await fill_project(platform, pid, org, items=1, blob_items=1)
    item = uuid.UUID(filled.items[0])
    s = project_schema(pid)
    stored = await read_value(platform, pid, "items", "id", str(item), "content")
    cipher = await project_cipher(platform.keys, pid)
    total_bits = len(stored) * 8
    # format byte, key version, nonce, first/middle ciphertext bytes, last tag bit
    for bit in (0, 7, 8 + 31, 40 + 3, 17 * 8 + 1, total_bits // 2, total_bits - 1):
        await _swap(
            db_target.owner_dsn,
            [
                (
                    f"UPDATE {s}.items "
                    "SET content = set_bit(%s::bytea, %s, 1 - get_bit(%s::bytea, %s)) "
                    "WHERE id = %s",
                    [stored, bit, stored, bit, item],
                )
            ],
        )
        tampered = await read_value(platform, pid, "items", "id", str(item), "content")
        assert tampered != stored
        with pytest.raises(DecryptionError):
            cipher.decrypt("items", item, "content", tampered)
    # a blob: one bit of the file flipped, and one blob swapped for another
    (table, row), (blob_id, _) = next(iter(filled.blobs.items()))
    path = Path(platform.blobs.root) / str(pid) / blob_id  # type: ignore[attr-defined]
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 3] ^= 0x10
    path.write_bytes(bytes(flipped))
    with pytest.raises(DecryptionError, match="blob of items row"):
        b"".join(cipher.get_blob(platform.blobs, table, row, blob_id))
    (_, export_row), (export_blob, _) = list(filled.blobs.items())[1]
    path.write_bytes((path.parent / export_blob).read_bytes())
    with pytest.raises(DecryptionError):
        b"".join(cipher.get_blob(platform.blobs, table, row, blob_id))
    path.write_bytes(original)
    assert (
        b"".join(cipher.get_blob(platform.blobs, table, row, blob_id))
        == filled.blobs[(table, row)][1]
    )
    assert export_row


async def test_json_and_blob_round_trip(platform: Platform) -> None:
    pid, _ = await new_project(platform)
    cipher = await project_cipher(platform.keys, pid)
    row = uuid.uuid4()
    value = {"label": "cat", "boxes": [[1, 2, 3, 4]], "note": "é ✓"}
    sealed = cipher.encrypt_json("annotations", row, "result", value)
    assert b"cat" not in sealed
    assert cipher.decrypt_json("annotations", row, "result", sealed) == value
    with pytest.raises(DecryptionError):
        cipher.decrypt_json("annotations", uuid.uuid4(), "result", sealed)
    chunks = [bytes([n]) * 70_000 for n in range(5)]
    blob_id = await asyncio.to_thread(cipher.put_blob, platform.blobs, "items", row, chunks)
    assert len(blob_id) == 32 and str(row.hex) not in blob_id
    assert b"".join(cipher.get_blob(platform.blobs, "items", row, blob_id)) == b"".join(chunks)
    with pytest.raises(DecryptionError):  # the blob is bound to its row
        b"".join(cipher.get_blob(platform.blobs, "items", uuid.uuid4(), blob_id))


async def test_many_values_sealed_at_once_are_each_bound_to_their_row(
    platform: Platform,
) -> None:
    """encrypt_many (the import's path): one key, fresh nonces, every value under its own row."""
    pid, _ = await new_project(platform)
    cipher = await project_cipher(platform.keys, pid)
    ring = await platform.keys.keyring(str(pid))
    rows = [(str(uuid.uuid4()), f"same text {n % 2}".encode()) for n in range(50)]
    used = ring.current.encryptions
    sealed = cipher.encrypt_many("items", "content", rows)
    assert ring.current.encryptions == used + 50  # each value counts toward the key's limit
    assert len({s[5:17] for s in sealed}) == 50  # 50 distinct nonces (after the 5-byte header)
    assert sealed == [s for s in sealed if b"same text" not in s]
    for (row, plain), value in zip(rows, sealed, strict=True):
        assert cipher.decrypt("items", row, "content", value) == plain
    with pytest.raises(DecryptionError):  # bound to its row: the neighbour's id fails
        cipher.decrypt("items", rows[1][0], "content", sealed[0])
    assert cipher.encrypt_many("items", "content", []) == []
    with pytest.raises(CryptoError):
        cipher.encrypt_many("items", "content", [(rows[0][0], "text, not bytes")])  # type: ignore[list-item]


def test_plaintext_cipher_is_never_wired(platform: Platform) -> None:
    # the platform exposes no cipher at all: domains get real ones from project_cipher()
    assert not any(isinstance(v, PlaintextCipher) for v in vars(platform).values())
    with pytest.raises(Exception, match="benchmarks only"):
        PlaintextCipher(uuid.uuid4(), i_know_this_is_plaintext=False)
    # no module of the platform imports or names it, except its own
    users = []
    for path in SRC.rglob("*.py"):
        if path.name == "testing.py" and path.parent.name == "keys":
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        if (
            "PlaintextCipher" in names
            or "labelvault.keys.testing" in modules
            or ("PlaintextCipher" in text)
        ):
            users.append(str(path))
    assert users == []


async def test_project_cipher_is_real(platform: Platform) -> None:
    pid, _ = await new_project(platform)
    cipher = await project_cipher(platform.keys, pid)
    assert type(cipher) is ProjectCipher
    sealed = cipher.encrypt("items", uuid.uuid4(), "content", b"hello world, hello world")
    assert b"hello" not in sealed and len(sealed) == 24 + 33


async def test_cipher_speaks_the_crypto_value_format(platform: Platform) -> None:
    """The cipher's fast path writes and reads exactly crypto.encrypt_value's format."""
    from labelvault.crypto import EncryptionContext, decrypt_value, encrypt_value

    pid, _ = await new_project(platform)
    cipher = await project_cipher(platform.keys, pid)
    ring = await platform.keys.keyring(str(pid))
    for table, row, column in (
        ("items", uuid.uuid4(), "content"),
        ("settings", "true", "dedup_key"),
        ("reviews", 12345, "comment"),
        ("é-table", "row with spaces ✓", "col"),
    ):
        ctx = EncryptionContext.for_row(pid, table, row, column)
        mine = cipher.encrypt(table, row, column, b"payload")
        assert decrypt_value(ring.get, mine, ctx) == b"payload"
        theirs = encrypt_value(ring.current, b"other", ctx)
        assert cipher.decrypt(table, row, column, theirs) == b"other"
        with pytest.raises(DecryptionError):
            cipher.decrypt(table, f"{row}x", column, theirs)
    with pytest.raises(Exception, match="row_id"):
        cipher.encrypt("items", "", "content", b"x")
