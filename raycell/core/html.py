"""Self-contained HTML pages: tables and figures embedded, nothing fetched from a network.

A report is read from a laptop's disk, a cluster's shared folder or an MLflow
artifact, often offline, so figures are PNGs in ``data:`` URIs and the style is
inline. A workload's report pieces return ``Section``s; ``page`` joins them.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.4em; } p.note { color: #555; margin-top: .2em; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums;
        display: block; overflow-x: auto; max-width: 100%; }
th, td { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } code { background: #f4f4f4; padding: 0 .25em; }
summary { cursor: pointer; color: #555; margin: .6em 0; }
"""


@dataclass(frozen=True)
class Section:
    title: str
    body: str  # HTML


def figure(fig, alt: str, dpi: int = 110) -> str:
    """A matplotlib figure as an embedded PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A DataFrame as an HTML table; ``formats``: column -> format spec ("{:.3f}")."""
    shown = frame.copy()
    for column, spec in (formats or {}).items():
        if column in shown:
            shown[column] = [spec.format(v) if pd.notna(v) else "" for v in shown[column]]
    return shown.to_html(index=False, border=0, escape=True, na_rep="")


def text(words: str) -> str:
    return f'<p class="note">{html.escape(words)}</p>'


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    body = "\n".join(f"<h2>{html.escape(s.title)}</h2>\n{s.body}" for s in sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>{html.escape(title)}</h1>{text(subtitle)}\n{body}\n</body></html>\n")


def write_page(path: Path, content: str) -> Path:
    """Written whole or not at all (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)
    return path
