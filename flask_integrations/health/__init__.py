"""Health: consecutive upstream failures and the status they imply, health checks, request figures."""
