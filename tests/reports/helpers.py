"""Helpers for report tests: DOM shape, visible text, PDF text per page."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser


class Shape(HTMLParser):
    """Collects the element structure (tags and attribute names) and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(a for a, _ in attrs))))
        self.attrs.extend((tag, a, v or "") for a, v in attrs)
        if tag in ("style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag):
        self.tags.append(("/" + tag, ()))
        if tag in ("style", "script", "title"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def shape(html: str) -> Shape:
    parser = Shape()
    parser.feed(html)
    parser.close()
    return parser


def visible_text(html: str, drop_footer: bool = False) -> str:
    if drop_footer:
        html = re.sub(r'<footer class="page-footer">.*?</footer>', "", html, flags=re.S)
    return " ".join(" ".join(shape(html).text).split())


def squash(text: str) -> str:
    """Remove all whitespace: PDF text extraction breaks lines anywhere."""
    return re.sub(r"\s+", "", text)


def pdf_pages(pdf: bytes) -> list[str]:
    """Text of each page, by poppler's pdftotext -raw (pypdf skipped some runs of text; the
    default mode joins a line-final hyphen with the next line)."""
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: install poppler-utils (.ci/apt.txt)"
    out = subprocess.run(
        [tool, "-raw", "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True
    )
    pages = out.stdout.decode("utf-8").split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages
