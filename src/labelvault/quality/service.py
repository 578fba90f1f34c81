"""Aggregates for managers, data owners and administrators: numbers, never raw content.

Agreement and gold accuracy need the answers themselves, which no manager context may read:
the platform computes them in its own context and hands back only the figures. The read is
audited.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from psycopg.rows import dict_row

from labelvault.access.scope import ProjectScope
from labelvault.annotation.label_schema import LabelSchema
from labelvault.annotation.settings import read_settings
from labelvault.audit.record import audit_project
from labelvault.db.runtime import RuntimeDatabase
from labelvault.keys.service import KeyService
from labelvault.keys.values import ProjectCipher, project_cipher
from labelvault.quality.agreement import agreement_for, gold_accuracy


async def aggregates(
    db: RuntimeDatabase, keys: KeyService, scope: ProjectScope, *, days: int = 30
) -> dict[str, Any]:
    cipher = await project_cipher(keys, scope.project_id)
    async with db.project_tx(scope.project_id, scope.context("system")) as conn:
        settings = await read_settings(conn)
        dcur = conn.cursor(row_factory=dict_row)
        await dcur.execute("SELECT state, count(*) AS n FROM tasks GROUP BY state")
        progress = {r["state"]: r["n"] for r in await dcur.fetchall()}
        await dcur.execute("SELECT count(*) AS n FROM items")
        items_row = await dcur.fetchone()
        await dcur.execute(
            "SELECT annotator, date_trunc('day', created_at)::date AS day, count(*) AS n "
            "FROM annotations WHERE created_at > now() - make_interval(days => %s) "
            "GROUP BY 1, 2 ORDER BY 2, 1",
            [days],
        )
        throughput = [
            {"annotator": str(r["annotator"]), "day": r["day"].isoformat(), "annotations": r["n"]}
            for r in await dcur.fetchall()
        ]
        await dcur.execute(
            "SELECT annotator, state, count(*) AS n FROM reviews "
            "WHERE state <> 'pending' GROUP BY 1, 2"
        )
        per_annotator: dict[str, dict[str, int]] = defaultdict(dict)
        totals: dict[str, int] = defaultdict(int)
        for r in await dcur.fetchall():
            per_annotator[str(r["annotator"])][r["state"]] = r["n"]
            totals[r["state"]] += r["n"]
        await dcur.execute("SELECT count(*) AS n FROM reviews WHERE state = 'pending'")
        pending_row = await dcur.fetchone()
        answers: list[dict[str, Any]] = []
        golds: list[dict[str, Any]] = []
        if settings.label_schema is not None:
            await dcur.execute(
                "SELECT a.id, a.item_id, a.result FROM annotations a "
                "WHERE a.item_id IN (SELECT item_id FROM annotations GROUP BY item_id "
                "HAVING count(*) >= 2) OR a.item_id IN (SELECT item_id FROM gold_answers)"
            )
            answers = await dcur.fetchall()
            await dcur.execute("SELECT item_id, result FROM gold_answers")
            golds = await dcur.fetchall()
        await audit_project(
            conn,
            scope.actor,
            "aggregates.read",
            resource_type="project",
            resource_id=scope.project_id,
            project_id=scope.project_id,
        )
    quality: dict[str, Any] = {"agreement": None, "gold_accuracy": None}
    if settings.label_schema is not None:
        # decrypting and comparing thousands of answers is CPU work: in a thread, after the
        # transaction (its connection is not held meanwhile)
        quality = await asyncio.to_thread(_quality, cipher, settings.schema(), answers, golds)
    decided = sum(totals.values())
    return {
        "items": items_row["n"] if items_row else 0,
        "tasks_by_state": progress,
        "throughput": throughput,
        "reviews": {
            "pending": pending_row["n"] if pending_row else 0,
            "decided": decided,
            "acceptance_rate": (
                (totals.get("accepted", 0) + totals.get("corrected", 0)) / decided
                if decided
                else None
            ),
            "by_annotator": dict(per_annotator),
        },
        **quality,
    }


def _quality(
    cipher: ProjectCipher,
    schema: LabelSchema,
    answers: list[dict[str, Any]],
    golds: list[dict[str, Any]],
) -> dict[str, Any]:
    """Agreement between annotators and accuracy on gold items, from the sealed answers."""
    by_item: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for r in answers:
        by_item[r["item_id"]].append(
            cipher.decrypt_json("annotations", r["id"], "result", bytes(r["result"]))
        )
    pairs = []
    for g in golds:
        gold = cipher.decrypt_json("gold_answers", g["item_id"], "result", bytes(g["result"]))
        pairs += [(answer, gold) for answer in by_item.get(g["item_id"], [])]
    return {
        "agreement": agreement_for(schema, {k: v for k, v in by_item.items() if len(v) >= 2}),
        "gold_accuracy": {"value": gold_accuracy(pairs, schema.kind), "answers": len(pairs)},
    }
