"""Shared fixtures: settings in a temporary instance root, real databases and key-value stores.

* ``db`` runs each test on SQLite, and again on PostgreSQL when
  ``PAULYOPS_TEST_DATABASE_URL`` is set. Each test session creates its own throwaway
  PostgreSQL database (dropped at the end); every test starts from empty tables.
* ``kv`` runs on the in-process store, and on Redis when ``PAULYOPS_TEST_REDIS_URL`` is set
  (each test gets its own key prefix).
* Tests never read a developer's ``.env.local``: settings always point at ``tmp_path``.

A server that is not configured skips its variant with the reason; CI sets every URL, and
:func:`pytest_sessionfinish` below fails the run there if anything skipped for a missing
server.
"""

from __future__ import annotations

import os

# Rich wraps CLI output at the terminal width (80 columns without a terminal, as in CI);
# a wide virtual terminal keeps assertions about messages independent of where they run.
os.environ["COLUMNS"] = "200"
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.db.models import Base
from paulyops.core.kv import KeyValueStore, MemoryKV, RedisKV
from paulyops.core.settings import Settings, load_settings, new_encryption_key, new_secret

PG_URL = os.environ.get("PAULYOPS_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("PAULYOPS_TEST_REDIS_URL")
AMQP_URL = os.environ.get("PAULYOPS_TEST_AMQP_URL")

NO_PG = "PostgreSQL not configured: set PAULYOPS_TEST_DATABASE_URL (CI does)"
NO_REDIS = "Redis not configured: set PAULYOPS_TEST_REDIS_URL (CI does)"

# Environment variables a developer's shell may carry that must not leak into tests.
_LEAKY = [
    "DATABASE_URL",
    "REDIS_URL",
    "PAULYOPS_HOME",
    "PAULYOPS_DATA_DIR",
    "PAULYOPS_ENV",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEYS_PREVIOUS",
    "SESSION_SECRET",
    "JWT_SECRET",
    "PAULYOPS_INSTANCE_KEY",
    "STRIPE_SECRET_KEY",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)


def fresh_secrets() -> dict[str, str]:
    """Return a fresh, valid set of instance secrets."""
    return {
        "JWT_SECRET": new_secret(),
        "SESSION_SECRET": new_secret(),
        "ENCRYPTION_KEY": new_encryption_key(),
        "PAULYOPS_INSTANCE_KEY": new_encryption_key(),
    }


def make_settings(root: Path, **env: str) -> Settings:
    """Return settings for an instance rooted at ``root`` with test secrets."""
    environ = {"PAULYOPS_ENV": "test", **fresh_secrets(), **env}
    return load_settings(root=root, environ=environ)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh instance root on the embedded defaults."""
    return make_settings(tmp_path)


# --- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.close()
    return path


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """Create a throwaway PostgreSQL database for this test session and drop it after."""
    if not PG_URL:
        pytest.skip(NO_PG)
    name = f"paulyops_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    db = Database(rendered)
    migrate.upgrade(db)
    db.close()
    try:
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def truncate_all(db: Database) -> None:
    """Empty every table (PostgreSQL), so the next test starts clean."""
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        # The audit table refuses TRUNCATE unless the purge switch is on (migration 0002).
        conn.execute(text("SET LOCAL paulyops.audit_purge = 'on'"))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database URL: SQLite, and PostgreSQL when configured."""
    if request.param == "sqlite":
        path = tmp_path / "paulyops.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database_url")
    yield url
    cleanup = Database(url)
    truncate_all(cleanup)
    cleanup.close()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A connected :class:`Database` on an empty, migrated schema."""
    database = Database(db_url)
    database.connect(attempts=3)
    yield database
    database.close()


# --- key-value stores ------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def kv(request: pytest.FixtureRequest) -> Iterator[KeyValueStore]:
    """A key-value store: in-process, and Redis when configured (own key prefix)."""
    if request.param == "memory":
        yield MemoryKV()
        return
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    store = RedisKV(REDIS_URL, prefix=f"paulyops-test:{uuid.uuid4().hex[:12]}:")
    yield store
    keys = list(store.client.scan_iter(match=store.prefix + "*"))
    if keys:
        store.client.delete(*keys)
    store.close()


# --- the web app ---------------------------------------------------------------------------


@pytest.fixture
def app_settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings of an instance on the ``db_url`` database (SQLite and PostgreSQL)."""
    return make_settings(tmp_path, DATABASE_URL=db_url)


@pytest.fixture
def client(app_settings: Settings) -> Iterator[TestClient]:
    """A TestClient on a started app (lifespan run, database ready)."""
    from paulyops.web.app import create_app

    app = create_app(app_settings)
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        assert app.state.instance.ready.wait(20), "instance did not become ready"
        yield test_client


# --- CI must not skip for a missing server --------------------------------------------------


_MISSING_SERVER_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember tests skipped because a server was not configured."""
    if report.skipped and "not configured" in str(report.longrepr):
        _MISSING_SERVER_SKIPS.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (PAULYOPS_CI=1), fail the run if any test skipped for a missing server."""
    if os.environ.get("PAULYOPS_CI") == "1" and _MISSING_SERVER_SKIPS:
        print(  # the reason CI failed must be visible in its log
            f"\nCI: {len(_MISSING_SERVER_SKIPS)} test(s) skipped for a missing server, e.g. "
            f"{_MISSING_SERVER_SKIPS[0]}; CI must run them all"
        )
        session.exitstatus = 1
