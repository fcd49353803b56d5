"""OAuth2 for `OAuth2` providers: the authorization flow and token refresh.

- `flow`: the single-use state and the PKCE verifier of one authorization.
- `tokens`: expiry, refresh under a cross-process lock, merging tokens into credentials.
- `locks`: the refresh lock (Redis, or the database in the embedded mode).
The routes are in `flask_integrations.web.oauth`, registered by `Integrations(app)`
unless ``INTEGRATIONS_BLUEPRINTS["oauth"]`` is False.
"""
