"""PostgreSQL for the tests: one throwaway server per session (``bench.postgres``), a
fresh database per test (``postgresql_url``), dropped afterwards. Skips (fails in CI)
where Debian's PostgreSQL or psycopg is not installed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bench import postgres
from tests.conftest import missing


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[int]:
    """A running PostgreSQL; yields its port."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install 'webpacs[postgresql]')")
    try:
        with postgres.local_postgresql() as port:
            yield port
    except postgres.Unavailable as e:
        missing(str(e))


@pytest.fixture
def postgresql_url(postgresql_server: int) -> Iterator[str]:
    """The URL of a fresh database, dropped afterwards."""
    name = f"t{uuid.uuid4().hex}"
    url = postgres.create_database(postgresql_server, name)
    yield url
    postgres.drop_database(postgresql_server, name)
