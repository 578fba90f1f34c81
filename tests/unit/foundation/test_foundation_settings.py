"""Settings: secrets never shown, secrets read from ``*_FILE``, a clear error when unreadable."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from labelvault.kernel.errors import InvalidInputError
from labelvault.settings import Settings

PASSWORD = "Sup3r-s3cret-pw"
DSN = f"postgresql://owner:{PASSWORD}@db.internal:5432/labelvault"
KEK = base64.b64encode(b"k" * 32).decode()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "LOCAL_KEK", "APP_DB_PASSWORD", "AUDIT_SIGNING_KEY"):
        monkeypatch.delenv(f"LABELVAULT_{name}", raising=False)
        monkeypatch.delenv(f"LABELVAULT_{name}_FILE", raising=False)


def test_secrets_never_shown() -> None:
    settings = Settings(database_url=DSN, app_db_password=PASSWORD, local_kek=KEK)  # type: ignore[arg-type]
    for shown in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        json.dumps(settings.model_dump(mode="json")),
        repr(settings.database_url),
        f"{settings.database_url}",
    ):
        assert PASSWORD not in shown
        assert KEK not in shown
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == DSN
    assert not settings.embedded


def test_secret_from_env_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELVAULT_DATABASE_URL", DSN)
    settings = Settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == DSN
    assert PASSWORD not in repr(settings) + settings.model_dump_json()


def test_secrets_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url_file, kek_file = tmp_path / "url", tmp_path / "kek"
    url_file.write_text(DSN + "\n")  # as `echo` and most secret stores write it
    kek_file.write_text(KEK + "\r\n")
    monkeypatch.setenv("LABELVAULT_DATABASE_URL_FILE", str(url_file))
    monkeypatch.setenv("LABELVAULT_LOCAL_KEK_FILE", str(kek_file))
    settings = Settings()
    assert settings.database_url is not None and settings.local_kek is not None
    assert settings.database_url.get_secret_value() == DSN
    assert settings.local_kek.get_secret_value() == KEK
    assert PASSWORD not in repr(settings) + settings.model_dump_json()


def test_a_direct_value_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABELVAULT_DATABASE_URL_FILE", str(tmp_path / "does-not-matter"))
    settings = Settings(database_url=DSN)  # type: ignore[arg-type]
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == DSN


@pytest.mark.parametrize("field", ["database_url", "local_kek"])
@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_secret_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, field: str, kind: str
) -> None:
    path = tmp_path / "absent" if kind == "missing" else tmp_path
    monkeypatch.setenv(f"LABELVAULT_{field.upper()}_FILE", str(path))
    with pytest.raises(InvalidInputError) as caught:
        Settings()
    message = caught.value.message
    assert message.startswith(f"cannot read the file given for {field}: ")
    assert "\n" not in message
    assert caught.value.field == field


def test_invalid_values_are_refused_without_echoing_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_url=DSN, port=70000)  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ValidationError):
        Settings(database_name="labelvault; DROP DATABASE x")
