"""``multiflexi-server``: the REST API under uvicorn.

Zero configuration: the same settings as the CLI (SQLite in the data directory by
default), listening on ``MULTIFLEXI_API_HOST``:``MULTIFLEXI_API_PORT`` (127.0.0.1:8080).
SIGTERM and SIGINT stop it gracefully: no new connections, requests in flight finish
(uvicorn's own handling), then the database pool is closed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from multiflexi.errors import ConfigError, MultiFlexiError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multiflexi-server", description=__doc__.splitlines()[0])
    p.add_argument("-e", "--environment", metavar="PATH", help="Environment file.")
    p.add_argument("--host", help="Address to listen on (MULTIFLEXI_API_HOST, 127.0.0.1).")
    p.add_argument("--port", type=int, help="Port (MULTIFLEXI_API_PORT, 8080).")
    p.add_argument("--workers", type=int, help="Worker processes (MULTIFLEXI_API_WORKERS, 1).")
    p.add_argument("--root-path", default="", help="Path prefix set by a reverse proxy.")
    p.add_argument("--base-path", default=None, help="API base path (default upstream's).")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def factory() -> Any:
    """The ASGI app, built from the environment (used by uvicorn's workers)."""
    from multiflexi.api.app import create_app
    from multiflexi.config import load_settings

    settings = load_settings(os.environ.get("MULTIFLEXI_ENV_FILE") or None)
    return create_app(settings, base_path=os.environ.get("MULTIFLEXI_SERVER_BASE_PATH") or None)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from multiflexi.config import load_settings

        settings = load_settings(args.environment)
        host = args.host or settings.get("MULTIFLEXI_API_HOST") or "127.0.0.1"
        port = (
            args.port if args.port is not None else int(settings.get("MULTIFLEXI_API_PORT") or 8080)
        )
        workers = args.workers or int(settings.get("MULTIFLEXI_API_WORKERS") or 1)
        if not 0 < port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {port}")
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if args.environment:
            os.environ["MULTIFLEXI_ENV_FILE"] = str(args.environment)
        if args.base_path is not None:
            os.environ["MULTIFLEXI_SERVER_BASE_PATH"] = args.base_path
        # Fail here, with one line, rather than in every worker: build the app once.
        from multiflexi.storage.database import Database

        Database(settings).ensure_schema()
    except (MultiFlexiError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    import uvicorn

    uvicorn.run(
        "multiflexi.api.server:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        root_path=args.root_path,
        log_level=args.log_level,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        timeout_graceful_shutdown=30,
    )
    return 0


def run() -> None:
    sys.exit(main())
