"""PBNSEC_DATABASE_URL: PostgreSQL is pooled unless told not to, and the pool's settings can be given in the URL."""
from pathlib import Path

import pytest
from playhouse.pool import PooledPostgresqlDatabase

from pbnsec.db import POOL_DEFAULTS, database, open_database


@pytest.mark.parametrize("url", ["postgresql://pbnsec:pw@127.0.0.1:5432/pbnsec", "postgres://127.0.0.1/pbnsec",
                                 "postgresql+pool://127.0.0.1/pbnsec"])
def test_postgresql_is_pooled_by_default(url):
    db = open_database(url, Path("."))
    assert isinstance(db, PooledPostgresqlDatabase)
    assert (db._max_connections, db._stale_timeout, db._wait_timeout) == (
        POOL_DEFAULTS["max_connections"], POOL_DEFAULTS["stale_timeout"], POOL_DEFAULTS["timeout"])


def test_the_url_sets_the_pool_or_switches_it_off():
    db = open_database("postgresql://127.0.0.1/pbnsec?max_connections=50&stale_timeout=60", Path("."))
    assert (db._max_connections, db._stale_timeout) == (50, 60)
    plain = open_database("postgresql://u:p%40ss@127.0.0.1/pbnsec?pool=false", Path("."))
    assert type(plain).__name__ == "PostgresqlDatabase" and plain.connect_params["password"] == "p%40ss"


@pytest.mark.parametrize("url", ["postgresql://127.0.0.1/pbnsec", "postgresql://127.0.0.1/pbnsec?pool=false"])
def test_an_unreachable_server_fails_in_seconds_unless_the_url_says_otherwise(url):
    assert open_database(url, Path(".")).connect_params["connect_timeout"] == 5
    sep = "&" if "?" in url else "?"
    assert open_database(url + sep + "connect_timeout=30", Path(".")).connect_params["connect_timeout"] == 30


@pytest.mark.postgresql_only
def test_the_test_server_is_served_through_the_pool(app):
    with app.app_context():
        assert isinstance(database.obj, PooledPostgresqlDatabase)
        database.execute_sql("SELECT 1")
        first = database.connection()
        database.close()
        database.execute_sql("SELECT 1")
        assert database.connection() is first  # handed back and taken again, not a new connection
