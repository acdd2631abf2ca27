"""The masker: every secret value and its common encodings become `***`, in one buffer and
across chunk boundaries; ordinary text goes through unchanged."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import SecretInvalid
from runner.secrets.masker import Masker, patterns_for
from runner.secrets.values import check_value, parse_assignments

SECRET = "s3cr3t/Value+with=padding?&"
MULTI = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----"


def _b64_in_stream(value: str, align: int) -> bytes:
    return base64.b64encode(b"x" * align + value.encode() + b"tail")


ENCODINGS = {
    "raw": lambda v: v.encode(),
    "base64 align 0": lambda v: _b64_in_stream(v, 0),
    "base64 align 1": lambda v: _b64_in_stream(v, 1),
    "base64 align 2": lambda v: _b64_in_stream(v, 2),
    "base64 alone, padded": lambda v: base64.b64encode(v.encode()),
    "base64 url-safe": lambda v: base64.urlsafe_b64encode(b"xy" + v.encode()),
    "url quote": lambda v: quote(v, safe="").encode(),
    "url quote_plus": lambda v: quote_plus(v).encode(),
    "json string": lambda v: json.dumps({"k": v}).encode(),
    "json ascii": lambda v: json.dumps({"k": v + "é"}, ensure_ascii=True).encode(),
    "hex": lambda v: v.encode().hex().encode(),
}


def _leaks(value: str, out: bytes) -> list[str]:
    """Which recognisable forms of `value` are still in `out`."""
    forms = {"raw": value.encode(), "b64": base64.b64encode(value.encode()).rstrip(b"=")[:-1],
             "url": quote(value, safe="").encode(), "json": json.dumps(value)[1:-1].encode()}
    for i, line in enumerate(value.split("\n")):
        if len(line) >= 4:
            forms[f"line {i}"] = line.encode()
    return [name for name, form in forms.items() if form in out]


def test_every_encoding_of_every_value_kind_is_masked_in_one_buffer_and_split() -> None:
    rows = []
    for kind, value in (("single-line", SECRET), ("multi-line", MULTI),
                        ("unicode", "pässwörd-ünïcødé"), ("short 4", "abcd")):
        masker = Masker([value])
        for name, encode in ENCODINGS.items():
            data = b"before " + encode(value) + b" after\n"
            whole = masker.mask(data)
            stream = masker.stream()
            split = b"".join(stream.feed(data[i:i + 3]) for i in range(0, len(data), 3))
            split += stream.flush()
            leaked = _leaks(value, whole) + _leaks(value, split)
            rows.append((kind, name, b"***" in whole, split == whole, leaked))
    print("\nvalue kind   | encoding               | masked | split==whole | leaks")
    for row in rows:
        print(f"{row[0]:12} | {row[1]:22} | {row[2]!s:6} | {row[3]!s:12} | {row[4]}")
    bad = [r for r in rows if not r[2] or not r[3] or r[4]]
    assert not bad


def test_multi_line_value_each_line_is_masked_wherever_it_appears() -> None:
    masker = Masker([MULTI])
    out = masker.text("a MIIEvQIBADANBgkq b\nhkiG9w0BAQEFAASC\n")
    assert out == "a *** b\n***\n"


def test_ordinary_text_goes_through_untouched_and_without_delay() -> None:
    masker = Masker([SECRET])
    stream = masker.stream()
    data = b"compiling module 3 of 10 ... ok\n"
    assert stream.feed(data) is data
    assert stream.feed(b"progress: 45%") == b"progress: 45%"   # no pattern starts like this
    assert stream.pending == 0


def test_a_possible_start_of_a_secret_is_held_until_decided() -> None:
    masker = Masker([SECRET])
    stream = masker.stream()
    assert stream.feed(b"token=s3cr3t/Val") == b"token="
    assert stream.pending == len("s3cr3t/Val")
    assert stream.feed(b"ue+with=padding?& done\n") == b"token=*** done\n"[len("token="):]
    assert stream.feed(b"s3cr") == b""
    assert stream.flush() == b"s3cr"       # the stream ended: it was not the secret


def test_longest_match_wins_when_one_secret_contains_another() -> None:
    masker = Masker(["abcd", "abcdefgh"])
    assert masker.text("xx abcdefgh yy abcd zz") == "xx *** yy *** zz"
    stream = masker.stream()
    out = stream.feed(b"abcd") + stream.feed(b"efgh\n") + stream.flush()
    assert out == b"***\n"


def test_no_secret_masker_is_the_identity() -> None:
    masker = Masker([])
    assert not masker.active
    data = b"anything\n"
    assert masker.mask(data) is data and masker.stream().feed(data) is data


@pytest.mark.parametrize("value", ["", "abc", "  ab  ", "a\0bcd"])
def test_values_shorter_than_4_characters_or_with_nul_are_refused(value: str) -> None:
    with pytest.raises(SecretInvalid) as err:
        check_value("TOKEN", value)
    assert "TOKEN" in str(err.value)
    if value.strip():
        assert value.strip() not in str(err.value)


def test_assignment_errors_never_show_the_value() -> None:
    with pytest.raises(SecretInvalid) as err:
        parse_assignments(["TOKEN_without_equals_hunter22"])
    assert "hunter22" not in str(err.value)
    with pytest.raises(SecretInvalid):
        parse_assignments(["1BAD=longenough"])


def test_patterns_never_hold_a_newline_and_are_at_least_4_bytes() -> None:
    for value in (SECRET, MULTI, "abcd", "ab\ncdef"):
        for pattern in patterns_for(value):
            assert b"\n" not in pattern and len(pattern) >= 4


@settings(max_examples=200, deadline=None)
@given(secret=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
                      min_size=4, max_size=40).filter(lambda s: len(s.strip()) >= 4),
       before=st.binary(max_size=60), after=st.binary(max_size=60),
       cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_split_anywhere_the_stream_equals_the_whole_buffer_and_hides_the_secret(
        secret: str, before: bytes, after: bytes, cuts: list[int]) -> None:
    masker = Masker([secret])
    data = before.replace(b"\n", b" ") + secret.encode() + after
    stream = masker.stream()
    pieces, prev = [], 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        pieces.append(stream.feed(data[prev:cut]))
        prev = cut
    pieces.append(stream.feed(data[prev:]))
    pieces.append(stream.flush())
    out = b"".join(pieces)
    assert out == masker.mask(data)
    for line in secret.split("\n"):
        if len(line.strip("\r").strip()) >= 4:
            assert line.strip("\r").encode() not in out
