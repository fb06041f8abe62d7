"""The one exception tree of MultiFlexi.

Every error a user can meet derives from :class:`MultiFlexiError`; the CLI maps them to exit
codes in one place (``cli/main.py``), and the first line of each docstring is the default
message.

    MultiFlexiError                 exit 1
    ├── ConfigError                 bad or missing configuration
    ├── DatabaseError               a database cannot be reached or used
    │   ├── SchemaBehind            the database schema is older than the code
    │   └── SchemaAhead             the database schema is newer than the code
    ├── NotFound                    an id, uuid, slug or name that does not exist
    ├── Invalid                     a value of the wrong shape or type
    │   └── AppDefinitionError      an application JSON that cannot be imported
    ├── Conflict                    duplicates, or a state that forbids the change
    ├── Refused                     the user declined a confirmation
    ├── Unauthenticated             no, wrong or expired credentials (HTTP 401)
    │   └── Throttled               too many failed logins: wait (HTTP 429)
    ├── Forbidden                   authenticated, but the role does not allow it (HTTP 403)
    ├── SecretError                 secrets cannot be encrypted or decrypted
    │   └── KeyMismatch             this process's master key is not the database's
    └── ExecutionError              a job could not be prepared or run
        └── ExecutorFault           this host cannot run jobs (key, job root, disk)
    UsageError                      exit 2: misuse of a command (missing option, ...)
"""

from __future__ import annotations


class MultiFlexiError(Exception):
    """MultiFlexi failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        doc = (type(self).__doc__ or "").strip().splitlines()
        super().__init__(message or (doc[0] if doc else type(self).__name__))

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(MultiFlexiError):
    """The configuration is invalid."""


class DatabaseError(MultiFlexiError):
    """The database cannot be used."""

    #: True for errors worth retrying (locks, deadlocks, dropped connections).
    transient = False


class SchemaBehind(DatabaseError):
    """The database schema is older than this version: run `multiflexi-cli db:migrate`."""


class SchemaAhead(DatabaseError):
    """The database is newer than this version: upgrade this host."""


class NotFound(MultiFlexiError):
    """Not found."""


class Invalid(MultiFlexiError):
    """Invalid value."""


class AppDefinitionError(Invalid):
    """The application definition is invalid."""

    def __init__(self, message: str | None = None, violations: list[str] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []


class Conflict(MultiFlexiError):
    """The change conflicts with existing data."""


class Refused(MultiFlexiError):
    """Aborted."""


class Unauthenticated(MultiFlexiError):
    """Authentication required."""


class Throttled(Unauthenticated):
    """Too many failed logins; try again later."""

    def __init__(self, message: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Forbidden(MultiFlexiError):
    """Not allowed."""


class SecretError(MultiFlexiError):
    """Secrets cannot be decrypted with the configured master key."""


class KeyMismatch(SecretError):
    """This process's master key is not the one that encrypted the database's secrets."""


class ExecutionError(MultiFlexiError):
    """The job could not be run."""


class ExecutorFault(ExecutionError):
    """This host cannot run jobs (its key, its job root): the fault is not the job's."""


class UsageError(MultiFlexiError):
    """Wrong usage."""

    exit_code = 2
