"""Streaming writers of the export formats: each turns records into plaintext bytes piece by
piece, so a bundle of any size is written with bounded memory.

One *record* is one exported annotation (the same fields in every format)::

    annotation_id, item_id    ids (text)
    kind                      "text" | "image"
    text                      the item's text (text items), else null
    image                     the image's file name (image items): the name it was imported
                              under, else "<item_id>.<png|jpeg>"; images are NOT embedded
    width, height             pixels (image items), else null
    status                    "accepted" | "corrected" (| "submitted" | "in_review" |
                              "rejected" when all annotations are exported)
    result                    the final result: the reviewer's correction when there is one
    metadata                  the item's import metadata (its subject id is never exported)

JSON Lines: one canonical JSON object per line (keys sorted, no spaces, UTF-8). CSV: a header
row, then the same fields; ``result`` and ``metadata`` as JSON text, nulls as empty cells.
Parquet: the same columns (``result`` and ``metadata`` JSON text), plus ``labels`` (list of
strings) for classification schemas; row groups of ``PARQUET_ROW_GROUP`` rows, zstd; readable
by Hugging Face ``datasets.load_dataset("parquet", ...)``. COCO (image_boxes projects): see
:class:`CocoWriter`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import TYPE_CHECKING, Any, Protocol

from labelvault.annotation.label_schema import CLASSIFICATION_KINDS

if TYPE_CHECKING:
    import pyarrow.parquet as pq

FIELDS = (
    "annotation_id",
    "item_id",
    "kind",
    "text",
    "image",
    "width",
    "height",
    "status",
    "result",
    "metadata",
)
PARQUET_ROW_GROUP = 5000
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "coco": "application/json",
}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "coco": "json"}


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 (what record hashes are taken of)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical(record)).digest()


class BundleWriter(Protocol):
    def begin(self) -> bytes: ...

    def add(self, record: dict[str, Any]) -> bytes: ...

    def end(self) -> bytes: ...


class JsonLinesWriter:
    def begin(self) -> bytes:
        return b""

    def add(self, record: dict[str, Any]) -> bytes:
        return canonical(record) + b"\n"

    def end(self) -> bytes:
        return b""


class CsvWriter:
    def __init__(self) -> None:
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\r\n")

    def _take(self) -> bytes:
        out = self._buf.getvalue().encode("utf-8")
        self._buf.seek(0)
        self._buf.truncate()
        return out

    def begin(self) -> bytes:
        self._csv.writerow(FIELDS)
        return self._take()

    def add(self, record: dict[str, Any]) -> bytes:
        row = []
        for name in FIELDS:
            value = record[name]
            if name in ("result", "metadata"):
                value = canonical(value).decode()
            row.append("" if value is None else value)
        self._csv.writerow(row)
        return self._take()

    def end(self) -> bytes:
        return b""


class _Sink(io.RawIOBase):
    """Where the Parquet writer writes: collected here and handed on after every row group."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.buffer += view
        self.position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


class ParquetWriter:
    def __init__(self, schema_kind: str | None) -> None:
        # imported here: pyarrow (with numpy) is ~40 MB per process, and only the export
        # builder needs it, not every server process
        import pyarrow as pa

        self._pa = pa
        self._labels = schema_kind in CLASSIFICATION_KINDS
        fields = [
            ("annotation_id", pa.string()),
            ("item_id", pa.string()),
            ("kind", pa.string()),
            ("text", pa.string()),
            ("image", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("status", pa.string()),
            ("result", pa.string()),
            ("metadata", pa.string()),
        ]
        if self._labels:
            fields.append(("labels", pa.list_(pa.string())))
        self._schema = pa.schema(fields)
        self._sink = _Sink()
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict[str, Any]] = []

    def begin(self) -> bytes:
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        return self._sink.take()

    def _flush(self) -> bytes:
        assert self._writer is not None
        if self._rows:
            self._writer.write_table(
                self._pa.Table.from_pylist(self._rows, schema=self._schema),
                row_group_size=PARQUET_ROW_GROUP,
            )
            self._rows = []
        return self._sink.take()

    def add(self, record: dict[str, Any]) -> bytes:
        row = dict(record)
        row["result"] = canonical(record["result"]).decode()
        row["metadata"] = canonical(record["metadata"]).decode()
        if self._labels:
            labels = record["result"].get("labels")
            row["labels"] = list(labels) if isinstance(labels, list) else None
        self._rows.append(row)
        if len(self._rows) >= PARQUET_ROW_GROUP:
            return self._flush()
        return b""

    def end(self) -> bytes:
        out = self._flush()
        assert self._writer is not None
        self._writer.close()
        return out + self._sink.take()


def make_writer(fmt: str, schema_kind: str | None) -> BundleWriter:
    if fmt == "jsonl":
        return JsonLinesWriter()
    if fmt == "csv":
        return CsvWriter()
    if fmt == "parquet":
        return ParquetWriter(schema_kind)
    raise ValueError(f"no record writer for {fmt}")


class CocoWriter:
    """COCO object detection JSON, streamed: ``info``, ``categories`` (the schema's labels, ids
    from 1), then the ``images`` array (one per item: ``file_name`` as for ``image`` above,
    ``width``, ``height``, ``labelvault_item_id``), then the ``annotations`` array (one per box:
    ``bbox`` ``[x, y, w, h]`` in pixels from the top-left corner, ``area``, ``iscrowd`` 0,
    ``category_id``, and ``labelvault_annotation_id`` / ``labelvault_status``). Images are
    referenced by file name only; the pixels stay with the data owner."""

    def __init__(self, labels: list[str], export_id: str) -> None:
        self._categories = {label: n + 1 for n, label in enumerate(labels)}
        self._export_id = export_id
        self._images = 0
        self._boxes = 0

    @property
    def counts(self) -> dict[str, int]:
        return {"coco_images": self._images, "coco_annotations": self._boxes}

    def begin(self) -> bytes:
        head = {
            "info": {
                "description": "LabelVault export",
                "version": "1.0",
                "labelvault_export_id": self._export_id,
            },
            "licenses": [],
            "categories": [
                {"id": n, "name": label, "supercategory": ""}
                for label, n in self._categories.items()
            ],
        }
        return canonical(head)[:-1] + b',"images":['

    def add_image(self, image_id: int, record: dict[str, Any]) -> bytes:
        entry = {
            "id": image_id,
            "file_name": record["image"],
            "width": record["width"],
            "height": record["height"],
            "labelvault_item_id": record["item_id"],
        }
        sep = b"," if self._images else b""
        self._images += 1
        return sep + b"\n" + canonical(entry)

    def between(self) -> bytes:
        return b'\n],"annotations":['

    def add_boxes(self, image_id: int, record: dict[str, Any]) -> bytes:
        out = bytearray()
        for box in record["result"].get("boxes", []):
            self._boxes += 1
            entry = {
                "id": self._boxes,
                "image_id": image_id,
                "category_id": self._categories[box["label"]],
                "bbox": [box["x"], box["y"], box["w"], box["h"]],
                "area": box["w"] * box["h"],
                "iscrowd": 0,
                "labelvault_annotation_id": record["annotation_id"],
                "labelvault_status": record["status"],
            }
            out += (b"," if self._boxes > 1 else b"") + b"\n" + canonical(entry)
        return bytes(out)

    def end(self) -> bytes:
        return b"\n]}\n"
