"""StepOutput: every byte to the log in order; lines of at most MAX_LINE bytes, whatever the
chunking (a property over random outputs and random chunk boundaries)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.engine.step_output import MAX_LINE, StepOutput


def _feed(chunks: list[bytes]) -> tuple[bytes, list[str]]:
    log: list[bytes] = []
    lines: list[str] = []
    out = StepOutput(log.append, lines.extend)
    for chunk in chunks:
        out(chunk)
    out.flush()
    return b"".join(log), lines


def _chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, at = [], 0
    for size in sizes:
        if at >= len(data):
            break
        chunks.append(data[at:at + size])
        at += size
    if at < len(data):
        chunks.append(data[at:])
    return chunks


def _expected_lines(data: bytes) -> list[bytes]:
    """The reference: split at LF (dropping a CRLF's CR), then each line in MAX_LINE pieces
    cut at a UTF-8 boundary; a last line without LF keeps its CR."""
    parts = data.split(b"\n")
    last = parts.pop()
    lines = parts
    out: list[bytes] = []
    for index, line in enumerate([*lines, last] if last else lines):
        ended = index < len(lines)
        while len(line) > MAX_LINE:
            cut = MAX_LINE
            while cut > MAX_LINE - 3 and line[cut] & 0xC0 == 0x80:
                cut -= 1
            if line[cut] & 0xC0 == 0x80:
                cut = MAX_LINE
            out.append(line[:cut])
            line = line[cut:]
        out.append(line.rstrip(b"\r") if ended else line)
    return out


PIECES = st.sampled_from([b"a", b"\n", b"\r", b"\r\n", "é".encode(), "€".encode(),
                          "𝄞".encode(), b"\xff", b"\x80", b"x" * 1000, b"y" * 40000])


@settings(max_examples=150, deadline=None)
@given(st.lists(PIECES, max_size=60), st.lists(st.integers(1, 70000), max_size=40))
def test_log_is_complete_and_lines_are_capped(pieces: list[bytes], sizes: list[int]) -> None:
    data = b"".join(pieces)
    log, lines = _feed(_chunked(data, sizes))
    assert log == data
    assert all(len(line.encode()) <= MAX_LINE for line in lines if "\ufffd" not in line)
    assert lines == [raw.decode("utf-8", "replace") for raw in _expected_lines(data)]


def test_a_line_without_newline_is_split_into_max_line_pieces() -> None:
    data = b"x" * (5 * MAX_LINE + 7)
    log, lines = _feed(_chunked(data, [65536] * 10))
    assert log == data
    assert [len(line) for line in lines] == [MAX_LINE] * 5 + [7]


def test_a_multibyte_character_is_never_cut() -> None:
    data = b"a" + "€".encode() * MAX_LINE  # a 3-byte character straddles every cut
    _, lines = _feed([data])
    assert "\ufffd" not in "".join(lines)
    assert "".join(lines).encode() == data
    assert all(MAX_LINE - 2 <= len(line.encode()) <= MAX_LINE for line in lines[:-1])


def test_crlf_and_progress_carriage_returns() -> None:
    _, lines = _feed([b"one\r\ntwo\r", b"\nthree 10%\rthree 100%\r\n", b"tail\r"])
    assert lines == ["one", "two", "three 10%\rthree 100%", "tail\r"]


SECRET = b"hunter2-s3cr3t"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\n", SECRET, b"x" * 30000, SECRET[:5]]), max_size=40),
       st.lists(st.integers(1, 70000), max_size=30))
def test_secrets_are_masked_across_chunks_and_cut_lines(pieces: list[bytes],
                                                        sizes: list[int]) -> None:
    from runner.secrets.masker import Masker

    data = b"".join(pieces)
    log: list[bytes] = []
    lines: list[str] = []
    out = StepOutput(log.append, lines.extend, mask=Masker([SECRET.decode()]).stream())
    for chunk in _chunked(data, sizes):
        out(chunk)
    out.flush()
    logged = b"".join(log)
    assert logged == data.replace(SECRET, b"***")
    assert SECRET.decode() not in "".join(lines)
    assert all(len(line.encode()) <= MAX_LINE for line in lines)
