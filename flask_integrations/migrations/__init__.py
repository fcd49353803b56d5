"""Alembic migrations shipped with flask-integrations; published with `flask integrations publish-migrations`."""
