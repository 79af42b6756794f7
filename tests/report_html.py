"""Reading a report back as a browser would: its tables, figures and any outside address."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Report:
    headings: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)  # rows of cells, header first
    images: list[bytes] = field(default_factory=list)  # decoded data: URIs
    outside: list[str] = field(default_factory=list)  # src/href values that are not data:


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.report, self.cell, self.heading = Report(), None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith("data:"):
                self.report.outside.append(attrs[name])
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.report.images.append(base64.b64decode(attrs["src"].split(",", 1)[1]))
        if tag == "table":
            self.report.tables.append([])
        elif tag == "tr":
            self.report.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "h2":
            self.heading = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.report.tables[-1][-1].append(self.cell.strip())
            self.cell = None
        elif tag == "h2":
            self.report.headings.append(self.heading.strip())
            self.heading = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.heading is not None:
            self.heading += data


def read_report(path: Path) -> Report:
    reader = _Reader()
    reader.feed(Path(path).read_text(encoding="utf-8"))
    return reader.report


def column(table: list[list[str]], name: str) -> list[str]:
    at = table[0].index(name)
    return [row[at] for row in table[1:]]
