"""Encryption of secrets at rest, and how secrets are shown (they are not).

Values are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the master key:
``ENCRYPTION_MASTER_KEY`` (or ``MULTIFLEXI_MASTER_KEY``) when configured, else a random key
kept in ``<data dir>/master.key`` (mode 0600). Several hosts sharing one server database
must use the same master key.

The database records the identity of its key (a fingerprint, never the key) when the
first secret is written (:mod:`multiflexi.storage.keys`). Before a process reads or
writes its first secret it compares its own key with that identity: a process with
another key, or none, refuses every secret with one line naming both fingerprints and
where its key came from, and a key file is created only while the database holds no
secret at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from multiflexi.errors import KeyMismatch, SecretError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

PREFIX = "mfenc:v1:"
REDACTED = "••••••••"
NOT_SET = "(not set)"

#: Field types whose values are secret whatever their declaration says.
SECRET_TYPES = frozenset({"password", "secret"})


def is_secret(field_type: str | None, declared_secret: bool = False) -> bool:
    return declared_secret or (field_type or "").lower() in SECRET_TYPES


def redact(value: str | None) -> str:
    return REDACTED if value else NOT_SET


def is_sealed(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def fingerprint(master: bytes) -> str:
    """The identity of a master key: 16 hex digits of an HMAC keyed with it (the key
    cannot be derived from it)."""
    return hmac.new(master, b"multiflexi-master-key-fingerprint-v1", hashlib.sha256).hexdigest()[
        :16
    ]


class KeyRecord(Protocol):
    """The database's side of the key identity (see :mod:`multiflexi.storage.keys`)."""

    #: The fingerprint this process has already found to match, if any.
    accepted: str | None

    def recorded(self) -> str | None:
        """The fingerprint the database records, or None."""

    def find_sealed(self) -> str | None:
        """One sealed value stored in the database, or None when it holds none."""

    def record(self, fingerprint: str) -> str:
        """Record ``fingerprint`` unless one is recorded already; the one recorded."""


@dataclass(frozen=True)
class LocalKey:
    """This process's master key (None when it has none) and where it comes from."""

    key: bytes | None
    source: str

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.key) if self.key is not None else None

    def describe(self) -> str:
        """``key 1a2b... (from ENCRYPTION_MASTER_KEY)`` or ``none (...)``."""
        if self.key is None:
            return f"none ({self.source})"
        return f"key {self.fingerprint} (from {self.source})"


def mismatch(recorded: str | None, local: LocalKey) -> KeyMismatch:
    """The one line a process with the wrong key, or none, refuses with."""
    theirs = f"key {recorded}" if recorded else "another key (its identity not recorded yet)"
    fix = "give this host the same ENCRYPTION_MASTER_KEY or master.key as the others"
    if local.key is None:
        fix += "; no new key is created while the database holds secrets"
    return KeyMismatch(
        f"master key mismatch: the database's secrets are encrypted with {theirs}, "
        f"this process has {local.describe()}: {fix}"
    )


class Vault:
    """Seals and opens secret values with the configured master key, once that key is
    found to be the database's (when a ``record`` is given: every real use)."""

    def __init__(
        self,
        master_key: str | None,
        key_file: Path | None = None,
        record: KeyRecord | None = None,
        *,
        key_name: str = "ENCRYPTION_MASTER_KEY",
    ) -> None:
        self._master = master_key
        self._key_file = key_file
        self._record = record
        self._key_name = key_name
        self._checked: bytes | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, db: Database | None) -> Vault:
        """The vault of a process; ``db``: the database whose key identity it keeps to
        (None only where no database is involved, e.g. unit tests)."""
        name = "ENCRYPTION_MASTER_KEY"
        if not settings.raw.get(name) and settings.raw.get("MULTIFLEXI_MASTER_KEY"):
            name = "MULTIFLEXI_MASTER_KEY"
        record = db.keys if db is not None else None
        return cls(settings.master_key, settings.data_dir / "master.key", record, key_name=name)

    @classmethod
    def for_session(cls, settings: Settings, session: Session) -> Vault:
        """A vault that checks the key identity of the database of ``session`` in it."""
        from multiflexi.storage.keys import KeyIdentity

        vault = cls.from_settings(settings, None)
        vault._record = KeyIdentity(None, session)
        return vault

    # -- the key ------------------------------------------------------------------------

    def local_key(self, *, create: bool = False) -> LocalKey:
        """This process's key; the key file is created only when ``create``."""
        if self._master:
            return LocalKey(self._master.encode(), self._key_name)
        path = self._key_file
        if path is None:
            return LocalKey(None, f"no {self._key_name}")
        source = f"the key file {path}"
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
        try:
            return LocalKey(path.read_text().strip().encode(), source)
        except (FileNotFoundError, NotADirectoryError):
            return LocalKey(None, f"no {self._key_name}, no key file {path}")
        except OSError as exc:
            raise SecretError(f"cannot read master key {path}: {exc.strerror}") from None

    def _key(self, *, writing: bool, sample: str | None = None) -> bytes:
        """The master key, checked once against the database's key identity. ``writing``:
        a secret is about to be stored (only then may a key be created); ``sample``: the
        sealed value about to be opened."""
        if self._checked is not None:
            return self._checked
        with self._lock:
            if self._checked is None:
                self._checked = self._check(writing, sample)
            return self._checked

    def _check(self, writing: bool, sample: str | None) -> bytes:
        record = self._record
        if record is None:
            local = self.local_key(create=writing)
            if local.key is None:
                raise SecretError(f"no master key: {local.source}")
            return local.key
        local = self.local_key()
        if local.key is not None and record.accepted == local.fingerprint:
            return local.key
        recorded = record.recorded()
        if recorded is not None:
            if local.key is None or local.fingerprint != recorded:
                raise mismatch(recorded, local)
        else:
            if sample is None:
                sample = record.find_sealed()
            if sample is not None:
                # Secrets written before the identity was recorded: the key that opens
                # one of them is the database's.
                if local.key is None or not _opens(local.key, sample):
                    raise mismatch(None, local)
            elif writing:
                local = self.local_key(create=True)
            elif local.key is None:
                raise SecretError(f"no master key: {local.source}")
            assert local.key is not None and local.fingerprint is not None
            recorded = record.record(local.fingerprint)
            if recorded != local.fingerprint:  # another process recorded its key first
                raise mismatch(recorded, local)
        record.accepted = local.fingerprint
        return local.key

    @cached_property
    def _aead(self):  # type: ignore[no-untyped-def]
        return _aead(self._key(writing=True))

    # -- values -------------------------------------------------------------------------

    def seal(self, plaintext: str) -> str:
        """Encrypt ``plaintext``; sealing an already sealed value returns it unchanged."""
        if is_sealed(plaintext):
            return plaintext
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode("utf-8"), None)
        return PREFIX + base64.urlsafe_b64encode(nonce + ct).decode()

    def open(self, sealed: str) -> str:
        """Decrypt a value made by :meth:`seal`; plain values are returned as they are."""
        if not is_sealed(sealed):
            return sealed
        if "_aead" not in self.__dict__:
            self._key(writing=False, sample=sealed)  # opening never creates a key
        text = _open(self._aead, sealed)
        if text is None:
            if self._record is None:
                raise SecretError(
                    "a secret cannot be decrypted: the master key differs from the one that "
                    "encrypted it"
                )
            raise SecretError(
                "a secret cannot be decrypted although this process's master key is the "
                "database's: the stored value is damaged"
            )
        return text


def _aead(master: bytes):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"multiflexi-secrets-v1"
    ).derive(master)
    return AESGCM(key)


def _open(aead, sealed: str) -> str | None:  # type: ignore[no-untyped-def]
    """The plaintext of a sealed value, None when this key cannot open it."""
    from cryptography.exceptions import InvalidTag

    try:
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :].encode())
        return aead.decrypt(raw[:12], raw[12:], None).decode("utf-8")  # type: ignore[no-any-return]
    except (InvalidTag, ValueError):
        return None


def _opens(master: bytes, sealed: str) -> bool:
    return _open(_aead(master), sealed) is not None
