"""The faces that speak HTTP: the webhook, OAuth and dashboard blueprints, with their access rule."""
