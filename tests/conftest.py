"""Fixtures shared by every suite: one real PostgreSQL for the session, migrated once."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

_runtime = tempfile.mkdtemp(prefix="lv-runtime-")
os.chmod(_runtime, 0o700)
os.environ.setdefault("XDG_RUNTIME_DIR", _runtime)
# Our own directory rather than pytest's rotating tmp_path: another pytest run on the machine
# must not delete the embedded cluster under us. Registered before pgserver's own exit hook,
# so it runs after the cluster has stopped.
_DATA_ROOT = tempfile.mkdtemp(prefix="labelvault-tests-")
atexit.register(shutil.rmtree, _DATA_ROOT, True)
atexit.register(shutil.rmtree, _runtime, True)

import random  # noqa: E402

import psycopg_pool.base  # noqa: E402

# psycopg_pool draws each new connection's lifetime jitter from the global ``random``. The tests'
# server runs in a thread: a connection it opens while hypothesis draws an example in the main
# thread changes the global random state under the strategy, and hypothesis fails the test as
# flaky (HypothesisDeprecationWarning, then FlakyStrategyDefinition). The pools get their own.
psycopg_pool.base.random = random.Random().random  # type: ignore[attr-defined]

from tests.support.platform import ServerThread  # noqa: E402

from labelvault.db.bootstrap import DatabaseTarget  # noqa: E402
from labelvault.platform import Platform, prepare_database  # noqa: E402
from labelvault.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(_DATA_ROOT) / "data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    overrides: dict[str, object] = {"data_dir": data_dir, "port": 0, "log_level": "warning"}
    url = os.environ.get("LABELVAULT_DATABASE_URL")
    if url:
        overrides["database_url"] = url
    return Settings(**overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def db_target(settings: Settings) -> DatabaseTarget:
    target, _ = prepare_database(settings)
    return target


@pytest.fixture(scope="session")
async def platform(settings: Settings, db_target: DatabaseTarget) -> AsyncIterator[Platform]:
    p = Platform.create(settings, db_target)
    await p.open()
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="session")
def server(settings: Settings, db_target: DatabaseTarget) -> Iterator[ServerThread]:
    thread = ServerThread(settings, db_target)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
