"""Encryption of secrets at rest, and how secrets are shown (they are not).

Values are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the master key:
``ENCRYPTION_MASTER_KEY`` (or ``MULTIFLEXI_MASTER_KEY``) when configured, else a random key
kept in ``<data dir>/master.key`` (mode 0600), created on first use. Several hosts sharing
one server database must configure the same ``ENCRYPTION_MASTER_KEY``.
"""

from __future__ import annotations

import base64
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from multiflexi.errors import SecretError

if TYPE_CHECKING:
    from multiflexi.config import Settings

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


class Vault:
    """Seals and opens secret values with the configured master key."""

    def __init__(self, master_key: str | None, key_file: Path | None = None) -> None:
        self._master = master_key
        self._key_file = key_file

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        return cls(settings.master_key, settings.data_dir / "master.key")

    def _master_bytes(self) -> bytes:
        if self._master:
            return self._master.encode()
        if self._key_file is None:
            raise SecretError("no ENCRYPTION_MASTER_KEY configured")
        path = self._key_file
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
        try:
            return path.read_text().strip().encode()
        except OSError as exc:
            raise SecretError(f"cannot read master key {path}: {exc.strerror}") from None

    @cached_property
    def _aead(self):  # type: ignore[no-untyped-def]
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"multiflexi-secrets-v1"
        ).derive(self._master_bytes())
        return AESGCM(key)

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
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :].encode())
            return self._aead.decrypt(raw[:12], raw[12:], None).decode("utf-8")  # type: ignore[no-any-return]
        except (InvalidTag, ValueError) as exc:
            raise SecretError(
                "a secret cannot be decrypted: the master key differs from the one that "
                "encrypted it"
            ) from exc
