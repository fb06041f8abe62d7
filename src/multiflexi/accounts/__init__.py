"""Users of the web API and the CLI: accounts, passwords, roles, tokens, login throttling."""
