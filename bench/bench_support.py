"""What the benchmarks share."""

from __future__ import annotations

import sqlalchemy as sa


def reachable(url: str) -> bool:
    """True when the PostgreSQL server answers; creates the benchmark database if missing."""
    server = sa.make_url(url).set(database="postgres")
    try:
        engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            name = sa.make_url(url).database
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False
