"""Alembic migrations shipped with flask-integrations (see `flask integrations publish-migrations`)."""
