"""Company slugs: readable, transliterated, validated, unique."""

from __future__ import annotations

import pytest

from multiflexi.companies.slug import MAX_LENGTH, slugify, unique_slug, validate_slug
from multiflexi.errors import Invalid


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme Corp", "acme_corp"),
        ("Účetní s.r.o.", "ucetni_s_r_o"),
        ("  ACME   Corp!! ", "acme_corp"),
        ("Žluťoučký kůň a.s.", "zlutoucky_kun_a_s"),
        ("Straße & Søn GmbH", "strasse_son_gmbh"),
        ("Łódź Œuvre", "lodz_oeuvre"),
        ("Firma 2024", "firma_2024"),
        ("already_a-slug", "already_a_slug"),
        ("Привет", "company"),
        ("!!!", "company"),
    ],
)
def test_slug_is_derived_readably_from_the_name(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_long_names_give_slugs_of_at_most_64_chars_without_trailing_underscore() -> None:
    slug = slugify("word " * 40)
    assert len(slug) <= MAX_LENGTH
    assert not slug.endswith("_")
    validate_slug(slug)


def test_unique_slug_appends_a_number_on_collision() -> None:
    assert unique_slug("acme", set()) == "acme"
    assert unique_slug("acme", {"acme"}) == "acme_2"
    assert unique_slug("acme", {"acme", "acme_2", "acme_3"}) == "acme_4"
    assert unique_slug("acme", lambda s: s in {"acme"}) == "acme_2"


def test_unique_slug_stays_within_64_chars() -> None:
    base = "a" * MAX_LENGTH
    got = unique_slug(base, {base})
    assert got == "a" * (MAX_LENGTH - 2) + "_2"
    assert len(got) == MAX_LENGTH


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("", "must not be empty"),
        ("Acme", "invalid slug 'Acme'"),
        ("acme corp", "invalid slug"),
        ("acme/corp", "invalid slug"),
        ("a" * 65, "65 characters long; at most 64"),
    ],
)
def test_invalid_slugs_are_refused(slug: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate_slug(slug)


@pytest.mark.parametrize("slug", ["acme", "acme_corp", "acme-corp", "a1", "a" * 64])
def test_valid_slugs_pass(slug: str) -> None:
    assert validate_slug(slug) == slug
