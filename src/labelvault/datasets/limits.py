"""Limits applied while importing a dataset file (see ``labelvault.datasets.parsers``).

Every limit is a plain number so deployments can tighten them; the defaults are generous for
real datasets and small enough to keep one import's memory and disk use bounded.

* Line formats (JSON Lines, CSV/TSV, text): a physical line (or CSV record) may not exceed
  ``max_line_bytes``; longer lines are skipped in bounded chunks, never held in memory.
* ZIP archives: entry count, total declared uncompressed size and compression ratio (per entry
  and overall) are checked from the central directory before anything is inflated, and the
  bytes actually inflated are counted while streaming, so a lying header cannot bypass them.
  Ratios only apply above ``zip_ratio_grace_bytes`` (tiny entries cannot be bombs).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class ImportLimits:
    max_upload_bytes: int = 2 * GIB
    max_items: int = 1_000_000
    max_row_errors: int = 100_000
    """Past this many bad rows the file is rejected as a whole (it is not the right format)."""

    max_line_bytes: int = MIB
    max_metadata_keys: int = 50
    max_metadata_bytes: int = 4 * KIB
    max_metadata_key_chars: int = 100
    max_subject_id_chars: int = 200
    max_external_id_chars: int = 200

    max_zip_entries: int = 100_000
    max_zip_directory_bytes: int = 64 * MIB
    max_zip_total_uncompressed: int = 4 * GIB
    max_zip_ratio: int = 100
    zip_ratio_grace_bytes: int = MIB

    max_image_bytes: int = 64 * MIB
    max_image_pixels: int = 50_000_000
    max_entry_name_chars: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ImportLimits.{f.name} must be a positive integer")
