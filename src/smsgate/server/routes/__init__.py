"""API routers, one module per concern."""
