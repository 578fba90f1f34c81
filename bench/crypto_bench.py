"""Encryption-overhead benchmark: the real ProjectCipher against a PlaintextCipher, same path.

Starts its own embedded PostgreSQL in a temporary data directory, creates an organization and
fresh projects, and for each cipher (alternating, ``--reps`` times, each on a fresh project):

1. write: ``--items`` items of ~``--chars`` characters (random text) are encrypted (the content,
   bound to its row; with ``--meta`` a small JSON meta too) and bulk-loaded into the project's
   ``items`` table, 1000 a transaction, on the project's own role as ``system``. PostgreSQL
   refuses ``COPY FROM`` on a table under row-level security, so the load is the platform's
   own bulk path, ``INSERT ... SELECT FROM unnest(...)`` with every column bound as an array
   (one round trip per batch);
2. serve: every item is read back (keyset pages of 1000) and decrypted.

Each phase runs in two styles: ``sequential`` (encrypt a batch, then insert it; fetch a page,
then decrypt it) and ``pipelined`` (encryption of batch k+1 / decryption of page k in a worker
thread while the database handles the other; the same work overlapped on two cores, as a bulk
import or export should do it). The only difference between the encrypted and the plaintext
run is the cipher object, so the slowdown is the cost of encryption (AES-256-GCM, AEAD context
per row, key lookup) on the real write and read path. Prints one JSON object (best of the
repetitions for each side; the machine's other load makes single runs noisy). Usage:
``python bench/crypto_bench.py [--items 20000] [--chars 400] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BATCH = 1000
INSERT = """
INSERT INTO items (id, kind, content, meta, dedup_key, created_by, text_length)
SELECT u.id, 'text', u.content, u.meta, u.dedup_key, %s, u.len
  FROM unnest(%s::uuid[], %s::bytea[], %s::bytea[], %s::bytea[], %s::int[])
       AS u(id, content, meta, dedup_key, len)
"""
SELECT = """
SELECT id, content, meta FROM items WHERE id > %s ORDER BY id LIMIT %s
"""


def _runtime_dir() -> None:
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="lv-bench-runtime-")


def _texts(n: int, chars: int) -> list[str]:
    return [secrets.token_urlsafe(chars)[:chars] for _ in range(n)]


def _prepare(
    cipher: Any, dedup: bytes, ids: list[uuid.UUID], texts: list[str], meta: bool
) -> list[list[Any]]:
    contents, metas, keys, lens = [], [], [], []
    for item_id, text in zip(ids, texts, strict=True):
        raw = text.encode()
        contents.append(cipher.encrypt("items", item_id, "content", raw))
        metas.append(
            cipher.encrypt_json("items", item_id, "meta", {"source": "bench"}) if meta else None
        )
        keys.append(hmac.new(dedup, raw, hashlib.sha256).digest())
        lens.append(len(text))
    return [ids, contents, metas, keys, lens]


def _open(cipher: Any, rows: list[tuple[Any, ...]]) -> int:
    seen = 0
    for item_id, content, meta in rows:
        text = cipher.decrypt("items", item_id, "content", content).decode()
        if meta is not None:
            cipher.decrypt_json("items", item_id, "meta", meta)
        seen += bool(text)
    return seen


async def _write(
    platform: Any,
    pid: uuid.UUID,
    cipher: Any,
    texts: list[str],
    ids: list[uuid.UUID],
    meta: bool,
    pipelined: bool,
) -> float:
    """Sequential: encrypt a batch, insert it, next. Pipelined: encrypt batch k+1 in a thread
    while the database inserts batch k (the same work, overlapped on two cores)."""
    from labelvault.db.context import ProjectContext

    ctx = ProjectContext(None, "system")
    dedup = secrets.token_bytes(32)
    owner = uuid.uuid4()

    async def insert(columns: list[list[Any]]) -> None:
        async with platform.db.project_tx(pid, ctx) as conn:
            await conn.execute(INSERT, [owner, *columns])

    starts = range(0, len(texts), BATCH)
    t0 = time.perf_counter()
    if not pipelined:
        for start in starts:
            await insert(
                _prepare(
                    cipher, dedup, ids[start : start + BATCH], texts[start : start + BATCH], meta
                )
            )
        return time.perf_counter() - t0
    pending: asyncio.Task[None] | None = None
    for start in starts:
        columns = await asyncio.to_thread(
            _prepare, cipher, dedup, ids[start : start + BATCH], texts[start : start + BATCH], meta
        )
        if pending is not None:
            await pending
        pending = asyncio.create_task(insert(columns))
    if pending is not None:
        await pending
    return time.perf_counter() - t0


async def _serve(platform: Any, pid: uuid.UUID, cipher: Any, expect: int, pipelined: bool) -> float:
    """Sequential: fetch a page, decrypt it, next. Pipelined: fetch page k+1 while page k is
    decrypted in a thread."""
    from labelvault.db.context import ProjectContext

    ctx = ProjectContext(None, "system")

    async def fetch(after: uuid.UUID) -> list[tuple[Any, ...]]:
        async with platform.db.project_tx(pid, ctx) as conn:
            cur = await conn.execute(SELECT, [after, BATCH])
            return list(await cur.fetchall())

    seen = 0
    t0 = time.perf_counter()
    rows = await fetch(uuid.UUID(int=0))
    while rows:
        if pipelined:
            nxt = asyncio.create_task(fetch(rows[-1][0]))
            seen += await asyncio.to_thread(_open, cipher, rows)
            rows = await nxt
        else:
            seen += _open(cipher, rows)
            rows = await fetch(rows[-1][0])
    took = time.perf_counter() - t0
    assert seen == expect, (seen, expect)
    return took


async def _bench(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    from labelvault.db.context import ProjectContext
    from labelvault.kernel.actor import Actor
    from labelvault.keys.testing import PlaintextCipher
    from labelvault.keys.values import ProjectCipher, project_cipher
    from labelvault.platform import Platform, prepare_database
    from labelvault.settings import Settings
    from labelvault.tenancy import service as tenancy

    settings = Settings(data_dir=data_dir, log_level="warning")
    target, _ = await asyncio.to_thread(prepare_database, settings)
    platform = Platform.create(settings, target)
    await platform.open()
    system = Actor.system("bench")
    texts = _texts(args.items, args.chars)
    styles = ("sequential", "pipelined")
    results: dict[str, dict[str, list[float]]] = {
        mode: {f"{style}_{phase}": [] for style in styles for phase in ("write", "serve")}
        for mode in ("encrypted", "plaintext")
    }
    try:
        org = await tenancy.create_organization(platform.db, system, name="bench", region="local")
        for rep in range(args.reps):
            order = ("encrypted", "plaintext") if rep % 2 == 0 else ("plaintext", "encrypted")
            for mode in order:
                project = await tenancy.create_project(
                    platform.db, platform.sealer, system, org_id=org.id, name=f"{mode}-{rep}"
                )
                pid = project.id
                cipher: Any
                if mode == "encrypted":
                    cipher = await project_cipher(platform.keys, pid)
                    assert isinstance(cipher, ProjectCipher)
                else:
                    cipher = PlaintextCipher(pid, i_know_this_is_plaintext=True)
                for style in styles:
                    ids = sorted(uuid.uuid4() for _ in texts)
                    pipe = style == "pipelined"
                    results[mode][f"{style}_write"].append(
                        await _write(platform, pid, cipher, texts, ids, args.meta, pipe)
                    )
                    results[mode][f"{style}_serve"].append(
                        await _serve(platform, pid, cipher, len(texts), pipe)
                    )
                    async with platform.db.project_tx(pid, ProjectContext(None, "system")) as c:
                        await c.execute("DELETE FROM items")
        # the cipher alone, no database: microseconds per value
        pid = (
            await tenancy.create_project(
                platform.db, platform.sealer, system, org_id=org.id, name="micro"
            )
        ).id
        cipher = await project_cipher(platform.keys, pid)
        ids = [uuid.uuid4() for _ in texts]
        raws = [t.encode() for t in texts]
        t0 = time.perf_counter()
        sealed = [cipher.encrypt("items", i, "content", r) for i, r in zip(ids, raws, strict=True)]
        enc_us = (time.perf_counter() - t0) / len(texts) * 1e6
        t0 = time.perf_counter()
        for i, blob in zip(ids, sealed, strict=True):
            cipher.decrypt("items", i, "content", blob)
        dec_us = (time.perf_counter() - t0) / len(texts) * 1e6
    finally:
        await platform.close()

    def rate(mode: str, phase: str) -> float:
        return float(args.items) / min(results[mode][phase])

    out: dict[str, Any] = {
        "items": args.items,
        "item_chars": args.chars,
        "reps": args.reps,
        "encrypted_values_per_item": 2 if args.meta else 1,
        "cpus": os.cpu_count(),
        "load_path": "INSERT ... SELECT FROM unnest (COPY FROM is refused under RLS)",
        "target_slowdown_pct": 10.0,
        "cipher_us_per_value": {"encrypt": round(enc_us, 2), "decrypt": round(dec_us, 2)},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    for style in styles:
        block: dict[str, Any] = {}
        for phase in ("write", "serve"):
            enc, plain = (
                rate("encrypted", f"{style}_{phase}"),
                rate("plaintext", f"{style}_{phase}"),
            )
            block[phase] = {
                "encrypted_items_per_s": round(enc),
                "plaintext_items_per_s": round(plain),
                "slowdown_pct": round((plain / enc - 1) * 100, 2),
            }
        enc_t = sum(min(results["encrypted"][f"{style}_{ph}"]) for ph in ("write", "serve"))
        plain_t = sum(min(results["plaintext"][f"{style}_{ph}"]) for ph in ("write", "serve"))
        block["end_to_end_slowdown_pct"] = round((enc_t / plain_t - 1) * 100, 2)
        block["meets_target"] = all(
            block[ph]["slowdown_pct"] < out["target_slowdown_pct"] for ph in ("write", "serve")
        )
        out[style] = block
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--chars", type=int, default=400)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--meta", action="store_true", help="also a JSON meta value per item")
    args = parser.parse_args()
    _runtime_dir()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    with tempfile.TemporaryDirectory(prefix="lv-crypto-bench-") as tmp:
        result = asyncio.run(_bench(args, Path(tmp) / "data"))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
