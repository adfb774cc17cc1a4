"""Ranking features computed from text, shared by the demo shop and the dataset adapters."""

import re

from components.ingest.demo_vocab import STOPWORDS

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> frozenset[str]:
    """The lexical score's view of a text: lower-case words, plural 's' dropped, no stopwords."""
    words = (
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in _TOKEN.findall(text.lower())
    )
    return frozenset(w for w in words if w not in STOPWORDS)


def lexical_score(query: str, title: str) -> float:
    """Share of the query's words that appear in the title, in [0, 1]."""
    query_tokens = tokens(query)
    if not query_tokens:
        return 0.0
    return round(len(query_tokens & tokens(title)) / len(query_tokens), 4)
