"""Operator-provided secrets: a redacting wrapper and a safe reader for env values and files."""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path
from typing import Generic, NoReturn, TypeVar

from labelvault.crypto.errors import CryptoError

__all__ = ["REDACTED", "Secret", "check_private_file", "read_secret"]

REDACTED = "**********"
T = TypeVar("T", str, bytes)


class Secret(Generic[T]):
    """Holds a secret string or bytes; ``repr``/``str``/format show only ``**********``."""

    __slots__ = ("_value",)
    _value: T

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """The secret value: pass it straight to where it is needed, never to a log."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        a, b = self._value, other._value
        if isinstance(a, str) and isinstance(b, str):
            return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
        if isinstance(a, bytes) and isinstance(b, bytes):
            return hmac.compare_digest(a, b)
        return False

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret must not be pickled")


def check_private_file(path: Path, *, forbidden_bits: int, what: str) -> None:
    """Refuse a file whose mode has any of ``forbidden_bits`` (e.g. ``0o077``), or not a file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CryptoError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CryptoError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CryptoError(f"{what} {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & forbidden_bits:
        raise CryptoError(
            f"{what} {path} has mode {mode:04o}, which lets other users read or change it; "
            f"restrict it, e.g. chmod 600 {path}"
        )


def read_secret(
    value: str | None, file: Path | None = None, *, name: str = "secret"
) -> Secret[str]:
    """Read a secret given as an env/config value or as a file (trailing newline stripped).

    Exactly one of ``value`` and ``file`` must be set. A file readable or writable by others
    (mode ``o+rw``) is refused.
    """
    if (value is None) == (file is None):
        raise CryptoError(f"{name}: give exactly one of a value or a file")
    if file is not None:
        path = Path(file)
        check_private_file(path, forbidden_bits=0o007, what=f"{name} file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise CryptoError(f"{name} file {path} cannot be read as UTF-8 text") from None
    else:
        assert value is not None
        text = value
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise CryptoError(f"{name} is empty")
    return Secret(text)
