"""Text out of uploaded files: ``.txt``, ``.md``, ``.html``, ``.pdf`` (pypdf), ``.json``,
``.csv``. A file that is empty, of another type, not valid in its format, or holds no text is
refused with ``DocumentError`` before anything is stored, as is a filename the database cannot
hold (longer than ``MAX_FILENAME_CHARS``, or with control characters such as NUL). The text
keeps no NUL characters and no lone surrogates (``\\ud800`` in JSON), which databases refuse."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from html.parser import HTMLParser
from typing import ClassVar

from switchboard.persistence.tables import documents as documents_table

TYPES = {".txt": "text/plain", ".md": "text/markdown", ".html": "text/html",
         ".htm": "text/html", ".pdf": "application/pdf", ".json": "application/json",
         ".csv": "text/csv"}
MAX_BYTES = 50 * 1024 * 1024
MAX_FILENAME_CHARS: int = documents_table.c.filename.type.length  # type: ignore[attr-defined]


class DocumentError(ValueError):
    """This upload cannot become text; the message says why (and names the file)."""


def content_type(filename: str) -> str:
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in TYPES:
        raise DocumentError(f"{filename}: unsupported file type {suffix or '(none)'!r}; "
                            f"upload {', '.join(sorted(TYPES))}")
    return TYPES[suffix]


def check_filename(filename: str) -> None:
    """Refuse a filename the database cannot store or a listing cannot show."""
    if len(filename) > MAX_FILENAME_CHARS:
        raise DocumentError(f"{filename[:40]}…: the filename is longer than "
                            f"{MAX_FILENAME_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in filename):
        raise DocumentError(f"{filename!r}: the filename holds control characters")


def extract_text(filename: str, data: bytes) -> tuple[str, str]:
    """(content type, text)."""
    check_filename(filename)
    kind = content_type(filename)
    if not data:
        raise DocumentError(f"{filename}: the file is empty")
    if len(data) > MAX_BYTES:
        raise DocumentError(f"{filename}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    if kind == "application/pdf":
        text = _pdf(filename, data)
    else:
        try:
            raw = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{filename}: not UTF-8 text ({exc.reason})") from exc
        text = {"text/html": _html, "application/json": _json, "text/csv": _csv}.get(
            kind, lambda _name, value: value)(filename, raw)
    text = _storable(text).strip()
    if not text:
        raise DocumentError(f"{filename}: no text in the file")
    return kind, text


def _storable(text: str) -> str:
    """``text`` without NUL characters, each lone surrogate as ``?``."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _pdf(filename: str, data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"{filename}: not a readable PDF ({exc})") from exc


class _HTMLText(HTMLParser):
    SKIP: ClassVar[set[str]] = {"script", "style", "head", "template"}
    BLOCK: ClassVar[set[str]] = {
        "p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "pre",
    }

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html(_filename: str, raw: str) -> str:
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _json(filename: str, raw: str) -> str:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{filename}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    except RecursionError as exc:  # the parser's own depth limit
        raise DocumentError(f"{filename}: JSON nested too deeply to read") from exc
    try:
        return json.dumps(value, indent=1, ensure_ascii=False)
    except RecursionError:  # readable but too deep to lay out again: the file's own text
        return raw


def _csv(filename: str, raw: str) -> str:
    try:
        rows = list(csv.reader(io.StringIO(raw)))
    except csv.Error as exc:
        raise DocumentError(f"{filename}: not valid CSV ({exc})") from exc
    if len(rows) < 2:
        return "\n".join(", ".join(r) for r in rows)
    header = rows[0]
    return "\n".join("; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False))
                     for row in rows[1:])
