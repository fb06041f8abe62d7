"""One module per noun; each registers its commands with ``@command`` on import."""
