"""Typed results of the SDK (plain frozen dataclasses shared by ``Client`` and ``AsyncClient``).

Each has ``from_json`` and keeps the server's object in ``raw`` for fields added later.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value not in (None, "") else None


def _req_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Project:
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    region: str
    status: str
    created_at: dt.datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Project:
        return cls(
            _req_uuid(d["id"]),
            _req_uuid(d["org_id"]),
            str(d["name"]),
            str(d.get("region", "")),
            str(d.get("status", "")),
            _time(d.get("created_at")),
        )


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    label_schema: dict[str, Any] | None
    overlap: int
    auto_distribution: bool
    review_share: float
    export_requires_approval: bool
    lease_seconds: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProjectSettings:
        schema = d.get("label_schema")
        return cls(
            schema if isinstance(schema, dict) else None,
            int(d.get("overlap", 1)),
            bool(d.get("auto_distribution", True)),
            float(d.get("review_share", 0.0)),
            bool(d.get("export_requires_approval", True)),
            int(d.get("lease_seconds", 0)),
            d,
        )


@dataclass(frozen=True, slots=True)
class RowIssue:
    """One bad row of an import: its 1-based line (or entry position) and why (no content)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    import_id: uuid.UUID | None
    format: str
    items_added: int
    duplicates: int
    rejected: int
    errors: tuple[RowIssue, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImportReport:
        errors = tuple(
            RowIssue(int(e.get("line", 0)), str(e.get("reason", "")))
            for e in d.get("errors", [])
            if isinstance(e, dict)
        )
        return cls(
            _uuid(d.get("import_id")),
            str(d.get("format", "")),
            int(d.get("items_added", 0)),
            int(d.get("duplicates", 0)),
            int(d.get("rejected", 0)),
            errors,
        )


@dataclass(frozen=True, slots=True)
class Task:
    task_id: uuid.UUID
    item_id: uuid.UUID
    kind: str
    text: str | None
    image_url: str | None
    width: int | None
    height: int | None
    label_schema: dict[str, Any] | None
    lease_expires_at: dt.datetime | None
    annotation: dict[str, Any] | None
    annotation_state: str | None
    review_comment: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Task:
        return cls(
            _req_uuid(d["task_id"]),
            _req_uuid(d["item_id"]),
            str(d.get("kind", "")),
            d.get("text"),
            d.get("image_url"),
            d.get("width"),
            d.get("height"),
            d.get("label_schema"),
            _time(d.get("lease_expires_at")),
            d.get("annotation"),
            d.get("annotation_state"),
            d.get("review_comment"),
        )


@dataclass(frozen=True, slots=True)
class SubmitResult:
    annotation_id: uuid.UUID
    version: int
    state: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubmitResult:
        return cls(_req_uuid(d["annotation_id"]), int(d["version"]), str(d["state"]))


@dataclass(frozen=True, slots=True)
class MyAnnotation:
    annotation_id: uuid.UUID
    task_id: uuid.UUID
    state: str
    version: int
    updated_at: dt.datetime | None
    editable: bool
    result: dict[str, Any]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MyAnnotation:
        return cls(
            _req_uuid(d["annotation_id"]),
            _req_uuid(d["task_id"]),
            str(d["state"]),
            int(d.get("version", 1)),
            _time(d.get("updated_at")),
            bool(d.get("editable", False)),
            _dict(d.get("result")),
        )


@dataclass(frozen=True, slots=True)
class ReviewSummary:
    review_id: uuid.UUID
    annotation_id: uuid.UUID
    created_at: dt.datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReviewSummary:
        return cls(
            _req_uuid(d["review_id"]), _req_uuid(d["annotation_id"]), _time(d.get("created_at"))
        )


@dataclass(frozen=True, slots=True)
class Review:
    review_id: uuid.UUID
    state: str
    annotation_id: uuid.UUID
    version: int
    item_id: uuid.UUID
    kind: str
    content: dict[str, Any]
    label_schema: dict[str, Any] | None
    result: dict[str, Any]
    created_at: dt.datetime | None

    @property
    def text(self) -> str | None:
        value = self.content.get("text")
        return value if isinstance(value, str) else None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Review:
        return cls(
            _req_uuid(d["review_id"]),
            str(d.get("state", "")),
            _req_uuid(d["annotation_id"]),
            int(d.get("version", 1)),
            _req_uuid(d["item_id"]),
            str(d.get("kind", "")),
            _dict(d.get("content")),
            d.get("label_schema"),
            _dict(d.get("result")),
            _time(d.get("created_at")),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    review_id: uuid.UUID
    state: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        return cls(_req_uuid(d["review_id"]), str(d["state"]))


@dataclass(frozen=True, slots=True)
class ReviewStats:
    pending: int
    decided: int
    acceptance_rate: float | None
    by_annotator: dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Aggregates:
    items: int
    tasks_by_state: dict[str, int]
    throughput: list[dict[str, Any]]
    reviews: ReviewStats
    agreement: dict[str, Any] | None
    gold_accuracy: dict[str, Any] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def annotated(self) -> int:
        """Tasks with a submitted or decided annotation."""
        return sum(
            n
            for state, n in self.tasks_by_state.items()
            if state in ("submitted", "accepted", "in_review")
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Aggregates:
        r = _dict(d.get("reviews"))
        rate = r.get("acceptance_rate")
        return cls(
            int(d.get("items", 0)),
            {str(k): int(v) for k, v in _dict(d.get("tasks_by_state")).items()},
            [t for t in d.get("throughput", []) if isinstance(t, dict)],
            ReviewStats(
                int(r.get("pending", 0)),
                int(r.get("decided", 0)),
                float(rate) if rate is not None else None,
                _dict(r.get("by_annotator")),
            ),
            d.get("agreement"),
            d.get("gold_accuracy"),
            d,
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_cursor: int | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditPage:
        cursor = d.get("next_cursor")
        return cls(
            [e for e in d.get("events", []) if isinstance(e, dict)],
            int(cursor) if cursor is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Export:
    """An export request. ``state``: pending_approval, approved, building, ready, downloaded,
    rejected, failed or expired (a ready bundle not downloaded in time); ``raw`` holds every
    field the server sent (manifest, ``expires_at``, times...)."""

    export_id: uuid.UUID
    state: str
    format: str | None = None
    only_accepted: bool | None = None
    item_count: int | None = None
    error: str | None = None
    manifest_sha256: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def failed(self) -> bool:
        return self.state in ("failed", "rejected", "cancelled", "expired")

    @property
    def finished(self) -> bool:
        """Nothing more will happen to it (ready, downloaded, rejected, failed or expired)."""
        return self.ready or self.failed or self.state == "downloaded"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Export:
        ident = d.get("export_id", d.get("id"))
        state = d.get("state", d.get("status", ""))
        count = d.get("item_count")
        only = d.get("only_accepted")
        return cls(
            _req_uuid(ident),
            str(state),
            d.get("format"),
            bool(only) if only is not None else None,
            int(count) if count is not None else None,
            d.get("error"),
            d.get("manifest_sha256"),
            d,
        )


@dataclass(frozen=True, slots=True)
class DownloadLink:
    """A one-time download link: an absolute or server-relative ``url``, or a ``token`` for
    ``GET /exports/{id}/download?token=...``. Treat it as a secret (its repr hides it)."""

    export_id: uuid.UUID
    url: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    expires_at: dt.datetime | None = None

    @classmethod
    def from_json(cls, export_id: uuid.UUID, d: dict[str, Any]) -> DownloadLink:
        url = d.get("url") or d.get("download_url") or d.get("href")
        token = d.get("token") or d.get("download_token")
        return cls(
            export_id,
            str(url) if url else None,
            str(token) if token else None,
            _time(d.get("expires_at")),
        )


@dataclass(frozen=True, slots=True)
class Download:
    path: str
    bytes: int
    content_type: str | None
