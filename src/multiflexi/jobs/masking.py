"""Masking secret values in a job's output stream, chunk by chunk.

A job's stdout and stderr arrive in chunks of arbitrary size, and a secret the job echoes
can be split between two of them. :class:`StreamMasker` holds back the few bytes at the
end of each chunk that could still be the beginning of a secret, so every occurrence is
masked wherever the chunk boundaries fall, while everything else passes through
byte-exact and memory stays bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Secrets shorter than this (in characters) are not masked: masking every "a" or "42"
#: of the output would destroy it and hide nothing.
MIN_SECRET_LENGTH = 3


class StreamMasker:
    """Replaces every occurrence of each secret by ``mask`` in a stream of chunks.

    Secrets are matched as UTF-8 bytes. Matching is one left-to-right pass that at each
    position prefers the longest secret (``re.sub`` with the secrets as alternatives,
    longest first): the output is the same however the stream is cut into chunks, and
    equals ``data.replace(secret, mask)`` applied longest-first whenever occurrences of
    different secrets do not overlap. Where they do overlap, the earlier occurrence wins.

    ``feed`` returns what is safe to emit now and keeps at most ``max_len - 1`` bytes
    (``max_len`` = the longest secret, in bytes); ``flush`` returns that tail at the end
    of the stream. Without secrets both are free: ``feed`` returns its argument.
    """

    __slots__ = ("_held", "_mask", "_max_len", "_pattern")

    def __init__(self, secrets: Iterable[str], mask: bytes = b"****") -> None:
        encoded = {s.encode() for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        ordered = sorted(encoded, key=lambda s: (-len(s), s))
        self._mask = mask
        self._held = b""
        self._max_len = len(ordered[0]) if ordered else 0
        self._pattern: re.Pattern[bytes] | None = (
            re.compile(b"|".join(re.escape(s) for s in ordered)) if ordered else None
        )

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return self._pattern is not None

    def feed(self, data: bytes) -> bytes:
        """Take the next chunk; return the masked bytes that can be emitted now."""
        if self._pattern is None:
            return data
        buffer = self._held + data if self._held else data
        # A match may only be decided where the longest secret fits entirely in what we
        # have: before `safe`, every alternative can be tested, so the match found there
        # (or the absence of one) is the one the whole stream would give.
        safe = len(buffer) - (self._max_len - 1)
        if safe <= 0:
            self._held = buffer
            return b""
        out: list[bytes] = []
        pos = 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= safe:
                break
            out.append(buffer[pos : match.start()])
            out.append(self._mask)
            pos = match.end()
        if pos < safe:
            out.append(buffer[pos:safe])
            pos = safe
        self._held = buffer[pos:]
        return b"".join(out)

    def flush(self) -> bytes:
        """End of stream: the held-back tail, masked."""
        if self._pattern is None or not self._held:
            return b""
        tail, self._held = self._held, b""
        mask = self._mask
        # A function, not the bytes: re.sub would read backslashes in a mask as escapes.
        return self._pattern.sub(lambda _match: mask, tail)
