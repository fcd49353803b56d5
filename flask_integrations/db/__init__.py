"""The database layer: tables, mapped models, statuses and transaction helpers.

It is the bottom of the package and imports nothing above it (see docs/architecture.md).
"""
