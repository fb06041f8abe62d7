"""Company slugs: short, readable, unique identifiers derived from the name. Pure code.

``Acme Corp`` -> ``acme_corp``; ``Účetní s.r.o.`` -> ``ucetni_s_r_o``. (Upstream replaced
capitals before lowercasing and made ``_cme_orp``; that defect is not copied.)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Container

from multiflexi.errors import Invalid

SLUG_PATTERN = re.compile(r"^[a-z0-9_-]+$")
MAX_LENGTH = 64
FALLBACK = "company"

#: Letters that Unicode decomposition does not reduce to ASCII.
_EXTRA = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "ħ": "h",
    }
)


def slugify(name: str) -> str:
    """A readable slug for ``name``: ASCII lower case, words joined by ``_``, ≤ 64 chars.

    Accents are transliterated; anything else that is not a letter or digit separates
    words. A name with no usable character gives ``company``.
    """
    text = unicodedata.normalize("NFKD", name.lower().translate(_EXTRA))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().translate(_EXTRA)
    slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    slug = slug[:MAX_LENGTH].rstrip("_")
    return slug or FALLBACK


def validate_slug(slug: str) -> str:
    """Return ``slug`` if it is valid, else raise :class:`Invalid` saying why."""
    if not slug:
        raise Invalid("slug must not be empty")
    if len(slug) > MAX_LENGTH:
        raise Invalid(f"slug is {len(slug)} characters long; at most {MAX_LENGTH} allowed")
    if not SLUG_PATTERN.match(slug):
        raise Invalid(f"invalid slug {slug!r}: use lower-case letters, digits, '_' and '-' only")
    return slug


def unique_slug(base: str, taken: Container[str] | Callable[[str], bool]) -> str:
    """``base``, or ``base_2``, ``base_3`` ... whichever is not taken, within 64 chars."""

    def is_taken(candidate: str) -> bool:
        return taken(candidate) if callable(taken) else candidate in taken

    if not is_taken(base):
        return base
    number = 2
    while True:
        suffix = f"_{number}"
        candidate = base[: MAX_LENGTH - len(suffix)].rstrip("_") + suffix
        if not is_taken(candidate):
            return candidate
        number += 1
