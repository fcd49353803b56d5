"""The dashboard: server-rendered pages and their actions under ``{INTEGRATIONS_URL_PREFIX}/dashboard``."""

from . import actions, pages  # noqa: F401  (their routes attach to the blueprint)
from .blueprint import blueprint, register

__all__ = ["blueprint", "register"]
