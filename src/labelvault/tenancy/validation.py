"""Validation of names and regions given by callers."""

from __future__ import annotations

import re
import unicodedata

from labelvault.kernel.errors import InvalidInputError

_REGION = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def clean_name(value: object, *, field: str = "name", max_length: int = 100) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string", field=field)
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise InvalidInputError(f"{field} must not be empty", field=field)
    if len(name) > max_length:
        raise InvalidInputError(f"{field} must be at most {max_length} characters", field=field)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise InvalidInputError(f"{field} must not contain control characters", field=field)
    return name


def clean_region(value: object) -> str:
    if not isinstance(value, str) or not _REGION.match(value):
        raise InvalidInputError(
            "region must be lower-case letters, digits and dashes (e.g. eu-west-1)", field="region"
        )
    return value
