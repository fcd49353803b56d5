"""The HTML dashboard (SPEC section 9): `blueprint.register(app, url_prefix)` is called by `init_app`."""
