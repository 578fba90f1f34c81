from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from labelvault.crypto import CryptoError, Secret, read_secret

VALUE = "hunter2-very-secret"


def test_secret_never_shows_value(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(VALUE)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr([s]), repr({"k": s})):
        assert VALUE not in text
        assert "**********" in text
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("secret is %s / %r", s, s)
    assert VALUE not in caplog.text
    assert s.reveal() == VALUE
    assert Secret(b"k") == Secret(b"k") and Secret(VALUE) != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        hash(s)


def test_read_secret_from_value_and_file(tmp_path: Path) -> None:
    assert read_secret(VALUE + "\n").reveal() == VALUE
    assert read_secret(" spaced \r\n").reveal() == " spaced "
    f = tmp_path / "secret"
    f.write_text(VALUE + "\n")
    f.chmod(0o600)
    assert read_secret(None, f).reveal() == VALUE
    f.chmod(0o640)  # group-readable (e.g. a mounted secret with fsGroup) is accepted
    assert read_secret(None, f).reveal() == VALUE


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o606, 0o666])
def test_read_secret_refuses_world_readable(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "secret"
    f.write_text(VALUE)
    f.chmod(mode)
    with pytest.raises(CryptoError, match="lets other users read or change it") as info:
        read_secret(None, f, name="database password")
    assert VALUE not in str(info.value)
    assert "database password file" in str(info.value)


def test_read_secret_errors(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="exactly one"):
        read_secret(None, None)
    with pytest.raises(CryptoError, match="exactly one"):
        read_secret("x", tmp_path / "f")
    with pytest.raises(CryptoError, match="does not exist"):
        read_secret(None, tmp_path / "missing")
    with pytest.raises(CryptoError, match="empty"):
        read_secret("\n")
    with pytest.raises(CryptoError, match="not a regular file"):
        read_secret(None, tmp_path)
