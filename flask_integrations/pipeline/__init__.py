"""The outbound request path, one module per stage, in the order of SPEC section 3."""
