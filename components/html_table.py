"""The HTML tables of the step reports (the evaluate report, ingest's statistics view)."""

from __future__ import annotations

import html
from collections.abc import Sequence


def escape(value) -> str:
    """`value` as text safe inside HTML."""
    return html.escape(str(value))


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Sequence[int] = (0,)
) -> str:
    """A <table>: the header escaped, the cells HTML already; columns in `text_columns` are
    left-aligned (class "text")."""

    def cell(tag: str, i: int, content: str) -> str:
        css = ' class="text"' if i in text_columns else ""
        return f"<{tag}{css}>{content}</{tag}>"

    head = "".join(cell("th", i, escape(h)) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
