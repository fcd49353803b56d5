"""Integrations' lifecycle: create, update and delete them; their credentials and owners."""
