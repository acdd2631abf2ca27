"""Terminal output to HTML: SGR colours and bold/italic/underline as `<span class>`, everything
else escaped. Streaming-safe: `AnsiHtml.feed` keeps the colour state, an escape sequence cut
at a chunk's end and a UTF-8 character cut in two for the next chunk, so a log rendered in
pieces is the same HTML as the log rendered at once.

Only class names from a fixed set ever reach the output (no inline styles, no text from the
log inside an attribute): 256-colour and true-colour codes map to the nearest of the 16.
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass, field

_SEQUENCE = re.compile(r"\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\^_])")
"""CSI (`ESC [ params final`), OSC (`ESC ] ... BEL|ST`) and two-byte escapes."""
_OPEN = re.compile(r"\x1b(?:\[[0-9;:?]*|\][^\x07\x1b]*)?")
"""The start of an escape sequence that more bytes may complete."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_PENDING = 256  # an "escape" longer than this is not one: flush it as text


def _nearest16(r: int, g: int, b: int) -> int:
    """The index (0-15) of the basic colour nearest an RGB value."""
    palette = [(0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205),
               (0, 205, 205), (229, 229, 229), (127, 127, 127), (255, 0, 0), (0, 255, 0),
               (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255)]
    return min(range(16), key=lambda i: sum((a - c) ** 2 for a, c in
                                            zip(palette[i], (r, g, b), strict=True)))


def _from256(n: int) -> int:
    if n < 16:
        return n
    if n >= 232:
        level = 8 + (n - 232) * 10
        return _nearest16(level, level, level)
    n -= 16
    steps = [0, 95, 135, 175, 215, 255]
    return _nearest16(steps[n // 36], steps[n // 6 % 6], steps[n % 6])


@dataclass
class Style:
    """The SGR state: foreground/background colour index (0-15) and attributes."""

    fg: int | None = None
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def classes(self) -> str:
        """The CSS classes of this state ('' for plain text)."""
        names = []
        if self.fg is not None:
            names.append(f"a-fg{self.fg}")
        if self.bg is not None:
            names.append(f"a-bg{self.bg}")
        names += [n for n, on in (("a-b", self.bold), ("a-d", self.dim), ("a-i", self.italic),
                                  ("a-u", self.underline)) if on]
        return " ".join(names)

    def apply(self, params: str) -> None:
        """Apply one SGR parameter list (`1;31`, `38;5;208`, `` = reset)."""
        codes = [int(p) if p.isdigit() else 0 for p in re.split("[;:]", params)] if params \
            else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            i += 1
            if code == 0:
                self.__init__()  # type: ignore[misc]
            elif code in (1, 2, 3, 4):
                setattr(self, {1: "bold", 2: "dim", 3: "italic", 4: "underline"}[code], True)
            elif code == 22:
                self.bold = self.dim = False
            elif code in (23, 24):
                setattr(self, "italic" if code == 23 else "underline", False)
            elif 30 <= code <= 37 or 90 <= code <= 97:
                self.fg = code - 30 if code < 90 else code - 90 + 8
            elif 40 <= code <= 47 or 100 <= code <= 107:
                self.bg = code - 40 if code < 100 else code - 100 + 8
            elif code in (39, 49):
                setattr(self, "fg" if code == 39 else "bg", None)
            elif code in (38, 48) and i < len(codes):
                mode = codes[i]
                if mode == 5 and i + 1 < len(codes):
                    colour: int | None = _from256(min(codes[i + 1], 255))
                    i += 2
                elif mode == 2 and i + 3 < len(codes):
                    colour = _nearest16(*(min(c, 255) for c in codes[i + 1:i + 4]))
                    i += 4
                else:
                    break
                setattr(self, "fg" if code == 38 else "bg", colour)


@dataclass
class AnsiHtml:
    """A converter for one stream (one task's log)."""

    style: Style = field(default_factory=Style)
    _pending: str = ""
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    def feed(self, data: bytes, final: bool = False) -> str:
        """The HTML of the next bytes of the stream (`final`: nothing follows)."""
        text = self._pending + self._decoder.decode(data, final)
        self._pending = ""
        if not final and text.endswith("\r"):  # a CR LF cut in two is one line end
            self._pending, text = "\r", text[:-1]
        last = text.rfind("\x1b")
        if not final and not self._pending and last != -1 and len(text) - last <= _MAX_PENDING:
            tail = text[last:]
            if _SEQUENCE.match(tail) is None and _OPEN.fullmatch(tail):
                self._pending = tail
                text = text[:last]
        out: list[str] = []
        pos = 0
        for match in _SEQUENCE.finditer(text):
            out.append(self._text(text[pos:match.start()]))
            if match.group(2) == "m":
                self.style.apply(match.group(1) or "")
            pos = match.end()
        out.append(self._text(text[pos:]))
        return "".join(out)

    def _text(self, text: str) -> str:
        if not text:
            return ""
        # a lone CR (progress bars) starts a new line: nothing is drawn over
        text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")
                            .replace("\x1b", ""))
        escaped = html.escape(text, quote=True)
        classes = self.style.classes()
        return f'<span class="{classes}">{escaped}</span>' if classes and escaped else escaped


def to_html(data: bytes) -> str:
    """A whole log as HTML."""
    return AnsiHtml().feed(data, final=True)
