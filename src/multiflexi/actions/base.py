"""What an action is: its options schema, the context it runs in, and how it fails.

An action is a class with a ``name``, a ``description``, a tuple of :class:`Option` and a
``perform(ctx)`` method that returns a one-line message on success and raises
:class:`ActionError` on failure. It is instantiated once per run, without arguments.
Everything it may know about the job is in :class:`ActionContext`; secret values of the
job are there only as a set to scrub with, never as data to send.
"""

from __future__ import annotations

import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from multiflexi.errors import Invalid

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.actions.payload import JobInfo
    from multiflexi.config import Settings
    from multiflexi.secrets import Vault
    from multiflexi.storage.database import Database
    from multiflexi.storage.models import RunTemplate

MODES = ("success", "fail")

#: Option types and how a value of each is written on the command line.
TYPES = {
    "string": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "url": "an http(s) URL",
    "list": "a comma-separated list",
    "command": "a command line (split like a shell, but never run by one)",
}


class ActionError(Exception):
    """An action failed; ``str(exc)`` is the message stored with the job."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        #: False when trying again later could succeed (a receiver that is down).
        self.permanent = permanent


#: A query parameter whose name contains one of these carries a credential
#: (``token``, ``access_token``, ``api_key``, ``client_secret``, ``signature``, ``sig``,
#: ``password``, ``auth``).
_SECRET_PARAMS = ("token", "key", "secret", "sig", "pass", "auth", "credential")


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that are credentials: the user-info (``user:password@`` or a
    bare ``token@``) and the values of query parameters named like a credential."""
    from urllib.parse import parse_qsl

    parts = urlsplit(url)
    found = []
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, _, password = userinfo.partition(":")
        found.append(password or user)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and any(word in name.lower() for word in _SECRET_PARAMS):
            found.append(value)
    return found


def redact_url(url: str) -> str:
    """``url`` with its credentials (see :func:`url_secrets`) replaced by the mask: where
    it goes stays readable."""
    from urllib.parse import unquote_plus, urlunsplit

    from multiflexi.secrets import REDACTED

    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, eq, value = piece.partition("=")
        if eq and value and any(word in unquote_plus(name).lower() for word in _SECRET_PARAMS):
            piece = f"{name}={REDACTED}"
        pieces.append(piece)
    query = "&".join(pieces)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Option:
    """One configuration option of an action."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    secret: bool = False
    description: str = ""

    def parse(self, raw: str, action: str) -> Any:
        """The typed value of ``raw``; :class:`Invalid` with a one-line reason if bad."""
        where = f"option {self.name} of {action}"
        text = raw.strip()
        if self.type == "int":
            try:
                return int(text)
            except ValueError:
                raise Invalid(f"{where} must be a whole number, got {raw!r}") from None
        if self.type == "float":
            try:
                number = float(text)
            except ValueError:
                raise Invalid(f"{where} must be a number, got {raw!r}") from None
            if number <= 0:
                raise Invalid(f"{where} must be greater than 0, got {raw!r}")
            return number
        if self.type == "bool":
            low = text.lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise Invalid(f"{where} must be true or false, got {raw!r}")
        if self.type == "url":
            parts = urlsplit(text)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                shown = "(secret)" if self.secret else repr(raw)
                raise Invalid(f"{where} must be an http(s) URL, got {shown}")
            return text
        if self.type == "list":
            return [item.strip() for item in text.split(",") if item.strip()]
        if self.type == "command":
            try:
                argv = shlex.split(raw)
            except ValueError as exc:
                raise Invalid(f"{where} is not a valid command line: {exc}") from None
            if not argv:
                raise Invalid(f"{where} must not be empty")
            return argv
        return raw

    def holds_secret(self, value: str) -> bool:
        """Whether this value is stored sealed and shown redacted: a secret option's, or a
        URL that carries a credential (a WebHook ``uri`` with a token in it)."""
        return self.secret or (self.type == "url" and bool(url_secrets(value)))

    def secrets_in(self, value: object) -> list[str]:
        """What to scrub from messages and payloads: the value of a secret option, the
        credentials of a URL."""
        if not value:
            return []
        if self.secret:
            return [str(value)]
        return url_secrets(str(value)) if self.type == "url" else []

    def shown(self, value: str) -> str:
        """The value as lists show it (``value`` already opened)."""
        from multiflexi.secrets import REDACTED

        if not value or not self.holds_secret(value):
            return value
        return redact_url(value) if not self.secret and self.type == "url" else REDACTED

    def record(self) -> dict[str, Any]:
        """What ``action:list`` shows about this option."""
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default": self.default,
            "secret": self.secret,
            "description": self.description,
        }


#: Every action has this option: how long it may run before it is abandoned.
TIMEOUT_OPTION = Option(
    "timeout",
    "float",
    description="Seconds this action may take (default MULTIFLEXI_ACTION_TIMEOUT, 60).",
)


class Action(ABC):
    """Base class of post-run actions. Subclasses set the class attributes and perform."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    #: The modes this action makes sense in; ``run-template:action:set`` refuses others.
    modes: ClassVar[tuple[str, ...]] = MODES

    @classmethod
    def all_options(cls) -> tuple[Option, ...]:
        names = {o.name for o in cls.options}
        return (*cls.options, *(o for o in (TIMEOUT_OPTION,) if o.name not in names))

    @classmethod
    def option(cls, name: str) -> Option | None:
        for opt in cls.all_options():
            if opt.name == name:
                return opt
        return None

    @classmethod
    def check(
        cls, options: Mapping[str, Any], session: Session, rt: RunTemplate, settings: Settings
    ) -> None:
        """Checks beyond the schema, at ``action:set`` time; raise :class:`Invalid`.
        Most actions have none."""
        return None

    @abstractmethod
    def perform(self, ctx: ActionContext) -> str:
        """Do the action; return a one-line message, or raise :class:`ActionError`."""


@dataclass
class ActionContext:
    """What an action may use: the finished job, its options, and the services."""

    job: JobInfo
    mode: str
    options: dict[str, Any]
    db: Database
    settings: Settings
    vault: Vault
    #: Secret values of the job (and of the action's own secret options): only to scrub.
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)
    #: The stored (sealed) environment of the job, for actions that pass variables on.
    stored_env: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    timeout: float = 60.0
    deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.timeout

    def remaining(self, cap: float | None = None) -> float:
        """Seconds left before the deadline (at least a little), at most ``cap``."""
        left = max(self.deadline - time.monotonic(), 0.05)
        return min(left, cap) if cap is not None else left

    def scrub(self, text: str) -> str:
        """``text`` with every secret value of the job replaced by a mask."""
        from multiflexi.actions.payload import scrub

        return scrub(text, self.secrets)

    def read_artifact(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """The content (at most ``limit`` bytes) of this job's artifact ``name``."""
        from multiflexi.actions.payload import find_artifact
        from multiflexi.storage import blobs

        art = find_artifact(self.job, name)
        if art is None:
            return None
        out = bytearray()
        for piece in blobs.iter_content(self.db, art.id):
            out += piece
            if len(out) >= limit:
                break
        return bytes(out[:limit])
