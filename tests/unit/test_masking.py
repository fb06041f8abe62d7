"""Masking secrets in a stream, wherever the chunk boundaries fall."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from multiflexi.jobs.masking import StreamMasker

MASK = b"****"


def stream(masker: StreamMasker, chunks: list[bytes]) -> bytes:
    out = b"".join(masker.feed(chunk) for chunk in chunks)
    return out + masker.flush()


def one_pass(data: bytes, secrets: list[str], mask: bytes = MASK) -> bytes:
    """Leftmost match, longest secret first at each position: the masker's contract."""
    encoded = sorted({s.encode() for s in secrets if len(s) >= 3}, key=len, reverse=True)
    if not encoded:
        return data
    pattern = re.compile(b"|".join(re.escape(s) for s in encoded))
    return pattern.sub(lambda _m: mask, data)


def replace_longest_first(data: bytes, secrets: list[str], mask: bytes = MASK) -> bytes:
    for secret in sorted({s.encode() for s in secrets if len(s) >= 3}, key=len, reverse=True):
        data = data.replace(secret, mask)
    return data


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_a_secret_split_across_chunks_is_masked() -> None:
    masker = StreamMasker(["hunter2"])
    assert stream(masker, [b"pass=hun", b"te", b"r2; again hunter2\n"]) == (
        b"pass=****; again ****\n"
    )


def test_every_byte_split_masks_the_same() -> None:
    data = b"xx s3cr3t yy s3cr3ts3cr3t zz"
    for size in range(1, len(data) + 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert stream(StreamMasker(["s3cr3t"]), chunks) == b"xx **** yy ******** zz"


def test_longer_secrets_win_over_their_prefixes() -> None:
    masker = StreamMasker(["abc", "abcdef"], mask=b"#")
    assert stream(masker, [b"abcdef abc abcde"]) == b"# # #de"


def test_secrets_shorter_than_three_characters_are_ignored() -> None:
    masker = StreamMasker(["ab", "", "x"])
    assert not masker.active
    assert stream(masker, [b"ab x"]) == b"ab x"


def test_short_in_characters_but_long_in_bytes_counts_characters() -> None:
    masker = StreamMasker(["žž"])  # 2 characters, 4 bytes: too short to mask
    assert stream(masker, ["žžž".encode()]) == "žžž".encode()
    masker = StreamMasker(["žžž"])
    assert stream(masker, ["ažžžb".encode()]) == b"a****b"


def test_without_secrets_the_chunk_itself_is_returned() -> None:
    masker = StreamMasker([])
    chunk = b"\x00binary\xff" * 100
    assert masker.feed(chunk) is chunk
    assert masker.flush() == b""


def test_binary_data_passes_through_unchanged() -> None:
    data = bytes(range(256)) * 50
    assert stream(StreamMasker(["secret"]), split(data, [7, 300, 1000])) == data


def test_it_holds_back_at_most_the_longest_secret_minus_one_byte() -> None:
    masker = StreamMasker(["abc", "0123456789"])
    emitted = masker.feed(b"y" * 100)
    assert len(emitted) == 100 - 9
    assert masker.feed(b"") == b""
    assert masker.flush() == b"y" * 9


def test_a_mask_with_backslashes_is_inserted_literally() -> None:
    masker = StreamMasker(["secret"], mask=b"\\1\\g<0>")
    assert stream(masker, [b"a secret b sec", b"ret"]) == b"a \\1\\g<0> b \\1\\g<0>"


secret_text = st.text(alphabet="abcž\x00", min_size=1, max_size=6)


@settings(max_examples=400)
@given(
    secrets=st.lists(secret_text, max_size=4),
    data=st.binary(max_size=200) | st.text(alphabet="abcž\x00 ", max_size=80).map(str.encode),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
)
@example(secrets=["aaa"], data=b"aaaa", cuts=[2])
@example(secrets=["abcd", "bca"], data=b"abcabcd", cuts=[1, 4])
def test_any_split_gives_the_one_pass_result(
    secrets: list[str], data: bytes, cuts: list[int]
) -> None:
    assert stream(StreamMasker(secrets), split(data, cuts)) == one_pass(data, secrets)


@st.composite
def disjoint_secrets(draw: st.DrawFn) -> list[str]:
    """Secrets over disjoint alphabets: occurrences of two of them can never overlap."""
    alphabets = draw(st.lists(st.sampled_from(["ab", "cd", "ef", "žý"]), unique=True, max_size=3))
    return [draw(st.text(alphabet=a, min_size=3, max_size=6)) for a in alphabets]


@settings(max_examples=300)
@given(
    secrets=disjoint_secrets(),
    data=st.text(alphabet="abcdefžý*-", max_size=100).map(str.encode),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=10),
)
def test_without_overlaps_it_equals_bytes_replace_longest_first(
    secrets: list[str], data: bytes, cuts: list[int]
) -> None:
    # ... and no secret contains the mask's "*": one pass is then exactly bytes.replace
    # applied longest-first, the reference the brief names.
    expected = replace_longest_first(data, secrets)
    assert one_pass(data, secrets) == expected
    assert stream(StreamMasker(secrets), split(data, cuts)) == expected
