"""Settings from a ``.env`` file and the process environment (the process wins).

The file is the one given with ``--environment``; else ``/etc/multiflexi/multiflexi.env``;
else ``/etc/multiflexi/.env``; else none. With nothing configured the database is SQLite
in the user's data directory, created on first use.

A daemon re-reads its file on SIGHUP (:func:`reload_settings`). A variable of the process
environment that had the file's own value at start-up is taken to come from the file
(systemd's ``EnvironmentFile=`` puts the file into the environment) and follows the file
on reload; any other variable of the environment still wins.

Unknown keys that start with ``MULTIFLEXI_`` or ``DB_`` are refused (they are typos of ours);
other keys are left alone because operators share one environment file between tools.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from multiflexi.errors import ConfigError

DEFAULT_ENV_FILES = (Path("/etc/multiflexi/multiflexi.env"), Path("/etc/multiflexi/.env"))

DRIVERS = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "mysql": "mysql",
    "mariadb": "mysql",
    "pgsql": "pgsql",
    "postgres": "pgsql",
    "postgresql": "pgsql",
}
DEFAULT_PORTS = {"mysql": 3306, "pgsql": 5432}

KNOWN_KEYS = frozenset(
    {
        "DB_CONNECTION",
        "DB_HOST",
        "DB_PORT",
        "DB_DATABASE",
        "DB_USERNAME",
        "DB_PASSWORD",
        "DB_POOL_SIZE",
        "MULTIFLEXI_TIMEZONE",
        "MULTIFLEXI_DATA_DIR",
        "MULTIFLEXI_JOBS_DIR",
        "MULTIFLEXI_KEEP_JOB_DIR",
        "MULTIFLEXI_MAX_PARALLEL",
        "MULTIFLEXI_MIN_FREE_MB",
        "MULTIFLEXI_LEASE_SECONDS",
        "MULTIFLEXI_POLL_INTERVAL",
        "MULTIFLEXI_KILL_GRACE",
        "MULTIFLEXI_SHUTDOWN_GRACE",
        "MULTIFLEXI_HOUSEKEEPING_INTERVAL",
        "MULTIFLEXI_METRICS_PORT",
        "MULTIFLEXI_METRICS_ADDRESS",
        "MULTIFLEXI_MASTER_KEY",
        "MULTIFLEXI_DAEMONIZE",
        "MULTIFLEXI_CYCLE_PAUSE",
        "MULTIFLEXI_MEMORY_LIMIT_MB",
        "MULTIFLEXI_ACTION_TIMEOUT",
        "MULTIFLEXI_LOG_LEVEL",
        "MULTIFLEXI_RETENTION_SUCCESS_DAYS",
        "MULTIFLEXI_RETENTION_FAILED_DAYS",
        "MULTIFLEXI_RETENTION_KEEP_LAST",
        "MULTIFLEXI_RETENTION_KEEP_FAILURES",
        "MULTIFLEXI_RETENTION_ARTIFACT_DAYS",
        "MULTIFLEXI_CLI_PATH",
        "MULTIFLEXI_DEFAULT_MEMORY_LIMIT",
        "MULTIFLEXI_DEFAULT_CPU_TIME_LIMIT",
        "MULTIFLEXI_DEFAULT_CPUS",
        "MULTIFLEXI_DEFAULT_MAX_PROCESSES",
        "MULTIFLEXI_DEFAULT_MAX_OPEN_FILES",
        "MULTIFLEXI_DEFAULT_OUTPUT_LIMIT",
        "MULTIFLEXI_LIMITS_MECHANISM",
        "MULTIFLEXI_API_HOST",
        "MULTIFLEXI_API_PORT",
        "MULTIFLEXI_API_BASE_PATH",
        "MULTIFLEXI_API_MAX_BODY",
        "MULTIFLEXI_API_CORS_ORIGINS",
        "MULTIFLEXI_API_WORKERS",
    }
)


#: Families of keys whose members are defined elsewhere (action option defaults).
OPEN_PREFIXES = ("MULTIFLEXI_ACTION_",)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _int(values: Mapping[str, str], key: str, default: int, minimum: int = 0) -> int:
    raw = values.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
    if number < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {number}")
    return number


def default_data_dir() -> Path:
    """Where the embedded SQLite database, the master key and job directories live."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("multiflexi", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the application reads from its configuration, already validated."""

    db_connection: str = "sqlite"
    db_host: str = "127.0.0.1"
    db_port: int | None = None
    db_database: str = ""
    db_username: str = ""
    db_password: str = field(default="", repr=False)
    data_dir: Path = field(default_factory=default_data_dir)
    jobs_dir: Path | None = None
    keep_job_dir: bool = False
    timezone: str = "UTC"
    max_parallel: int = 2
    #: Free space the job root must have for an executor to start (megabytes).
    min_free_mb: int = 64
    lease_seconds: int = 60
    poll_interval: float = 0.1
    kill_grace: float = 10.0
    shutdown_grace: float = 30.0
    housekeeping_interval: int = 3600
    metrics_port: int | None = None
    #: Where the metrics endpoint listens: loopback unless said otherwise.
    metrics_address: str = "127.0.0.1"
    action_timeout: float = 60.0
    master_key: str | None = field(default=None, repr=False)
    #: Global default resource limits of jobs (``MULTIFLEXI_DEFAULT_*``), by limit name.
    default_limits: Mapping[str, int | float] = field(default_factory=dict)
    #: auto, cgroup or rlimit (``MULTIFLEXI_LIMITS_MECHANISM``).
    limits_mechanism: str = "auto"
    env_file: Path | None = None
    raw: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Variables of the process environment taken to be copies of the file's (see above).
    environ_from_file: frozenset[str] = frozenset()

    @property
    def sqlite_path(self) -> Path:
        return Path(self.db_database) if self.db_database else self.data_dir / "multiflexi.sqlite"

    @property
    def job_root(self) -> Path:
        return self.jobs_dir or self.data_dir / "jobs"

    def database_url(self) -> Any:
        """The SQLAlchemy URL of the configured database."""
        from sqlalchemy.engine import URL

        if self.db_connection == "sqlite":
            return URL.create("sqlite", database=str(self.sqlite_path))
        if self.db_connection == "mysql":
            return URL.create(
                "mysql+pymysql",
                username=self.db_username or "root",
                password=self.db_password or None,
                host=self.db_host,
                port=self.db_port or DEFAULT_PORTS["mysql"],
                database=self.db_database or "multiflexi",
                query={"charset": "utf8mb4"},
            )
        return URL.create(
            "postgresql+psycopg",
            username=self.db_username or None,
            password=self.db_password or None,
            host=self.db_host,
            port=self.db_port or DEFAULT_PORTS["pgsql"],
            database=self.db_database or "multiflexi",
        )

    def describe_database(self) -> str:
        """Human name of the database, never with its password."""
        if self.db_connection == "sqlite":
            return f"sqlite {self.sqlite_path}"
        port = self.db_port or DEFAULT_PORTS[self.db_connection]
        name = self.db_database or "multiflexi"
        return f"{self.db_connection} {self.db_host}:{port}/{name}"

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.raw.get(key, default)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file; a missing or unreadable file, or a line that is not
    ``KEY=VALUE`` (python-dotenv would skip it with a warning), is a :class:`ConfigError`."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    if not path.is_file():
        raise ConfigError(f"environment file not found: {path}")
    try:
        with path.open(encoding="utf-8") as stream:
            for binding in parse_stream(stream):
                if binding.error:
                    text = binding.original.string.strip()
                    shown = text if len(text) <= 60 else text[:57] + "..."
                    raise ConfigError(
                        f"{path}, line {binding.original.line}: not KEY=VALUE: {shown!r}"
                    )
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read environment file {path}: {exc}") from None
    return {k: v for k, v in values.items() if v is not None}


def find_env_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        try:
            found = path.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte
            why = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"cannot read environment file {str(path)[:80]!r}: {why}") from None
        if not found:
            raise ConfigError(f"environment file not found: {path}")
        return path
    for candidate in DEFAULT_ENV_FILES:
        if candidate.is_file() and os.access(candidate, os.R_OK):
            return candidate
    return None


def load_settings(
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    environ_from_file: frozenset[str] | None = None,
) -> Settings:
    """Read and validate the settings. ``environ`` defaults to ``os.environ``;
    ``environ_from_file`` names its variables that yield to the file (by default those
    whose value is the file's)."""
    path = find_env_file(env_file)
    file_values = read_env_file(path) if path else {}
    unknown = sorted(
        k
        for k in file_values
        if (k.startswith("MULTIFLEXI_") or k.startswith("DB_"))
        and k not in KNOWN_KEYS
        and not k.startswith(OPEN_PREFIXES)
    )
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]} in {path}")
    env = os.environ if environ is None else environ
    if environ_from_file is None:
        environ_from_file = frozenset(k for k, v in file_values.items() if env.get(k) == v)
    own = {k: v for k, v in env.items() if k not in environ_from_file}
    settings = settings_from_values({**file_values, **own}, path)
    return replace(settings, environ_from_file=environ_from_file)


def reload_settings(current: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings again from the file ``current`` was read from (SIGHUP): the variables
    that were copies of the file's at start-up follow the file now."""
    return load_settings(current.env_file, environ, environ_from_file=current.environ_from_file)


def settings_from_values(values: Mapping[str, str], path: Path | None = None) -> Settings:
    raw_driver = (values.get("DB_CONNECTION") or "sqlite").strip().lower()
    if raw_driver not in DRIVERS:
        valid = ", ".join(sorted(DRIVERS))
        raise ConfigError(f"unknown DB_CONNECTION {raw_driver!r}; valid: {valid}")
    driver = DRIVERS[raw_driver]
    port = _int(values, "DB_PORT", 0, 0) or None
    data_dir = Path(values["MULTIFLEXI_DATA_DIR"]) if values.get("MULTIFLEXI_DATA_DIR") else None
    tz = values.get("MULTIFLEXI_TIMEZONE") or "UTC"
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception:
        raise ConfigError(f"unknown MULTIFLEXI_TIMEZONE {tz!r}") from None
    metrics_port = _int(values, "MULTIFLEXI_METRICS_PORT", 0, 0) or None
    try:
        poll = float(values.get("MULTIFLEXI_POLL_INTERVAL") or 0.1)
        grace = float(values.get("MULTIFLEXI_KILL_GRACE") or 10)
        shutdown = float(values.get("MULTIFLEXI_SHUTDOWN_GRACE") or 30)
        action_timeout = float(values.get("MULTIFLEXI_ACTION_TIMEOUT") or 60)
    except ValueError as exc:
        raise ConfigError(f"invalid number in configuration: {exc}") from None
    from multiflexi.executors.limits import LimitError, defaults_from_settings, parse_mechanism

    try:
        default_limits = defaults_from_settings(values)
        mechanism = parse_mechanism(values.get("MULTIFLEXI_LIMITS_MECHANISM"))
    except LimitError as exc:
        raise ConfigError(str(exc)) from None
    kwargs: dict[str, Any] = {}
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    return Settings(
        db_connection=driver,
        db_host=values.get("DB_HOST") or "127.0.0.1",
        db_port=port,
        db_database=values.get("DB_DATABASE") or "",
        db_username=values.get("DB_USERNAME") or "",
        db_password=values.get("DB_PASSWORD") or "",
        jobs_dir=Path(values["MULTIFLEXI_JOBS_DIR"]) if values.get("MULTIFLEXI_JOBS_DIR") else None,
        keep_job_dir=_truthy(values.get("MULTIFLEXI_KEEP_JOB_DIR")),
        timezone=tz,
        max_parallel=_int(values, "MULTIFLEXI_MAX_PARALLEL", 2, 1),
        min_free_mb=_int(values, "MULTIFLEXI_MIN_FREE_MB", 64, 0),
        lease_seconds=_int(values, "MULTIFLEXI_LEASE_SECONDS", 60, 2),
        poll_interval=poll,
        kill_grace=grace,
        shutdown_grace=shutdown,
        housekeeping_interval=_int(values, "MULTIFLEXI_HOUSEKEEPING_INTERVAL", 3600, 0),
        metrics_port=metrics_port,
        metrics_address=(values.get("MULTIFLEXI_METRICS_ADDRESS") or "127.0.0.1").strip(),
        action_timeout=action_timeout,
        master_key=values.get("ENCRYPTION_MASTER_KEY") or values.get("MULTIFLEXI_MASTER_KEY"),
        default_limits=default_limits,
        limits_mechanism=mechanism,
        env_file=path,
        raw=dict(values),
        **kwargs,
    )
