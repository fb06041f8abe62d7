"""The REST API (FastAPI, served by ``multiflexi-server``): parses requests, checks who
asks, calls the same service functions as the CLI, renders the answer. No SQL here.

Nothing in ``cli/`` imports this package: the CLI never pays for FastAPI.
"""
