"""ANSI to HTML: colours become classes, everything else is escaped, and a log rendered chunk
by chunk (every split point) shows the same characters with the same classes as at once."""

from __future__ import annotations

import re

import pytest

from server_stub.web.ansi import AnsiHtml, to_html

LOG = ("\x1b[1;31mred <b>&amp;\x1b[0m plain \x1b[38;5;208morange\x1b[m "
       "\x1b[38;2;0;0;255mblue\x1b[39m été \x1b]0;title\x07end\x1b[2K\r\n"
       "\x1b[4m<script>alert(1)</script>\x1b[24m\x00\x07 done\n").encode()


def _cells(html: str) -> list[tuple[str, str]]:
    """(character, classes) for each visible character: the same log however it was cut."""
    out: list[tuple[str, str]] = []
    for match in re.finditer(r'<span class="([^"]*)">(.*?)</span>|([^<]+)', html, re.S):
        classes, inner, plain = match.group(1) or "", match.group(2), match.group(3)
        text = inner if inner is not None else plain
        for entity in re.finditer(r"&[a-z#0-9]+;|.", text, re.S):
            out.append((entity.group(0), classes))
    return out


def test_colours_are_classes_and_text_is_escaped() -> None:
    html = to_html(LOG)
    print(html)
    assert '<span class="a-fg1 a-b">red &lt;b&gt;&amp;amp;</span>' in html
    assert '<span class="a-fg11">orange</span>' in html or 'class="a-fg3">orange' in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "title" not in html  # an OSC (window title) is not text
    assert "\x1b" not in html and "\x00" not in html and "\x07" not in html
    assert "été" in html
    assert re.fullmatch(r'(?:[^<]|<span class="[a-z0-9 -]*">|</span>)*', html), \
        "only spans with fixed class names"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11])
def test_chunked_is_the_same_as_whole(size: int) -> None:
    whole = _cells(to_html(LOG))
    converter = AnsiHtml()
    parts = [converter.feed(LOG[i:i + size]) for i in range(0, len(LOG), size)]
    parts.append(converter.feed(b"", final=True))
    assert _cells("".join(parts)) == whole


def test_an_unfinished_escape_at_the_very_end_is_not_lost_or_shown() -> None:
    converter = AnsiHtml()
    first = converter.feed(b"ok \x1b[3")
    assert first == "ok "
    assert converter.feed(b"2mgreen") == '<span class="a-fg2">green</span>'
    assert "\x1b" not in to_html(b"tail \x1b[")
