"""Text from the peer, made safe for the place it is shown: one function per sink.

A PACS decides the bytes of its error comments, implementation version names, AE titles in its
answers, dataset values and whatever our transcripts quote of them. Shown as they are, they can
drive the user's terminal (an OSC sequence retitles the window or writes the clipboard, a CSI
sequence clears the screen or moves the cursor to forge a line), turn a Markdown report into a
page with live links and remote images, or break an HTML report. Every view passes peer text
through the function for its sink:

- :func:`for_terminal` — the terminal summary, ``--details``, the TUI's widgets and the plain-text
  files a person may ``cat`` (the bundle's transcript): escape sequences (CSI, OSC, DCS, SOS, PM,
  APC and two-character ESC sequences, in their 7-bit and 8-bit forms) and the C0 and C1 control
  characters, DEL, and the Unicode format characters that reorder or hide text (bidirectional
  overrides and isolates, zero-width characters) are each replaced by one U+FFFD, so the reader
  sees that something was removed. Line breaks are kept only where multi-line text is legitimate.
- :func:`markdown_inline` — Markdown text outside code spans: everything :func:`for_terminal`
  removes, plus link and image syntax (``[x](javascript:...)``, ``![img](http://...)``, reference
  definitions), raw HTML and autolinks (``<http://...>``; bare ``http://`` and ``www.`` addresses
  are shown as code spans, which no renderer turns into links).
- :func:`for_html` — text for the HTML report (Jinja escapes it; this removes what no browser
  should get: control and format characters).
- :func:`json_text` — a JSON document's text: C1 controls, line separators and format characters
  written as ``\\uXXXX`` escapes (the same JSON value), so that ``cat report.json`` is as harmless
  as the report.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

# An escape sequence, 7-bit (ESC + introducer) or 8-bit (a C1 introducer):
#   CSI  ESC [ or 0x9B, parameters, intermediates, one final byte;
#   OSC, DCS, SOS, PM, APC  ESC ] P X ^ _ or 0x9D 0x90 0x98 0x9E 0x9F, a string, then BEL or ST
#        (ESC \ or 0x9C); an unterminated string ends at the end of its line;
#   anything else  ESC, intermediates, one final byte (ESC c resets the terminal, ESC ( 0 ...).
_SEQUENCE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
# Single characters no sink should pass on: C0 (tab and line feed handled apart), DEL, C1,
# zero-width and direction marks, line and paragraph separators, bidirectional embeddings,
# overrides and isolates, the byte order mark, interlinear annotation and object replacement.
_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb]"
)
# A quick test: does the text hold anything the sinks change at all?
_ANY_RE = re.compile(_CONTROL_RE.pattern[:-1] + "\t\n]")


def for_terminal(text: object, multiline: bool = False) -> str:
    """Peer text as it may reach a terminal: escape sequences and control characters become
    U+FFFD; a tab becomes a space; a line feed is kept when ``multiline`` (a carriage return
    before it is dropped), else it becomes a space, so one peer string cannot forge a line."""
    text = text if isinstance(text, str) else str(text)
    if _ANY_RE.search(text) is None:
        return text
    text = _SEQUENCE_RE.sub(REPLACEMENT, text)
    if multiline:
        text = text.replace("\r\n", "\n")
    text = text.replace("\t", " ")
    if not multiline:
        text = text.replace("\n", " ")
    return _CONTROL_RE.sub(REPLACEMENT, text)


def for_html(text: object) -> str:
    """Text for the HTML report before Jinja escapes it: control and format characters removed
    (line feeds and tabs kept: the page's ``<pre>`` blocks need them)."""
    text = text if isinstance(text, str) else str(text)
    if _ANY_RE.search(text) is None:
        return text
    text = _SEQUENCE_RE.sub(REPLACEMENT, text.replace("\r\n", "\n"))
    return _CONTROL_RE.sub(REPLACEMENT, text)


# Markdown: characters that open links, images, HTML and entities, and addresses renderers link.
_URL_RE = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.\-]{1,31}://|www\.)(?:[^\s<>`]*[^\s<>`.,;:!?)\]'\"])?")
_MD_LINK_CHARS = {"[": "\\[", "]": "\\]", "<": "&lt;"}


def markdown_inline(text: str, escape: object = None) -> str:
    """Peer text for Markdown outside code spans: no link, image, autolink or HTML stays live.

    ``escape`` (a function of one string) escapes the rest of a plain segment the renderer's way
    (emphasis markers ...); addresses become code spans made by ``code_span``.
    """
    text = for_terminal(text, multiline=True)
    out: list[str] = []
    pos = 0
    for m in _URL_RE.finditer(text):
        out.append(_markdown_plain(text[pos:m.start()], escape))
        out.append(code_span(m.group(0)))
        pos = m.end()
    out.append(_markdown_plain(text[pos:], escape))
    return "".join(out)


def _markdown_plain(text: str, escape: object) -> str:
    text = "".join(_MD_LINK_CHARS.get(ch, ch) for ch in text)
    return escape(text) if callable(escape) else text


def code_span(text: str) -> str:
    """A Markdown code span holding ``text`` literally, whatever backticks it contains."""
    text = " ".join(for_terminal(text).split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_JSON_ESCAPE_RE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def json_text(text: str) -> str:
    """A JSON document's text with C1 controls, line separators and format characters written
    as ``\\uXXXX``. They can occur only inside JSON strings, where the escape means the same
    character, so the document parses to the same value."""
    return _JSON_ESCAPE_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
