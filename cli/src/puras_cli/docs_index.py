"""The project's own documentation (``docs/*.md``), as the MCP docs tools serve it: listed,
read by slug, and searched with a small ranked full-text match. A wheel carries the pages inside
the package (``puras_cli/docs``); a source checkout reads the repository's ``docs/``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

MAX_QUERY_CHARS: Final = 200
MAX_RESULTS: Final = 20
_WORD: Final = re.compile(r"[a-z0-9_]{2,}")
_STOP: Final = frozenset(
    "an and are as at be by can do does for from how in is it of on or the to what when where "
    "which who why with".split()
)
_K1: Final = 1.2
_B: Final = 0.75


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    body: str

    @property
    def summary(self) -> str:
        """The first paragraph after the title."""
        for block in self.body.split("\n\n"):
            text = block.strip()
            if text and not text.startswith("#"):
                return " ".join(text.split())[:240]
        return ""


def docs_dir() -> Path:
    packaged = Path(__file__).with_name("docs")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "docs"


@cache
def pages() -> dict[str, Page]:
    """Every page by slug (its file name without ``.md``), in name order."""
    found: dict[str, Page] = {}
    for path in sorted(docs_dir().glob("*.md")):
        body = path.read_text(encoding="utf-8")
        title = next(
            (line[2:].strip() for line in body.splitlines() if line.startswith("# ")), path.stem
        )
        found[path.stem] = Page(path.stem, title, body)
    return found


def search(query: str, *, limit: int = 5) -> list[dict[str, object]]:
    """Pages ranked by BM25 over the query's words (rarer words weigh more, a long page's many
    mentions less, a word in the title more still), each with a snippet around its first
    match."""
    terms = set(_words(query[:MAX_QUERY_CHARS]))
    if not terms:
        return []
    corpus = pages()
    words = {slug: _words(page.body) for slug, page in corpus.items()}
    average = sum(map(len, words.values())) / max(1, len(words))
    idf = {
        t: math.log(1 + len(corpus) / (1 + sum(t in set(w) for w in words.values()))) for t in terms
    }
    scored = []
    for slug, page in corpus.items():
        counts = [words[slug].count(t) for t in terms]
        if not any(counts):
            continue
        title = set(_words(page.title))
        norm = _K1 * (1 - _B + _B * len(words[slug]) / average)
        score = sum(
            idf[t] * (c * (_K1 + 1) / (c + norm) + (2 if t in title else 0))
            for t, c in zip(terms, counts, strict=True)
        )
        scored.append((score, slug))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [
        {
            "slug": slug,
            "title": corpus[slug].title,
            "score": round(score, 3),
            "snippet": _snippet(corpus[slug].body, terms),
        }
        for score, slug in scored[: max(1, min(limit, MAX_RESULTS))]
    ]


def _words(text: str) -> list[str]:
    """Lower-cased words with a plural's final ``s`` dropped, so "secrets" finds "secret"."""
    return [
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in _WORD.findall(text.lower())
        if w not in _STOP
    ]


def _snippet(body: str, terms: set[str], width: int = 240) -> str:
    lower = body.lower()
    hits = [i for t in terms if (i := lower.find(t)) >= 0]
    start = max(0, min(hits) - width // 3) if hits else 0
    text = " ".join(body[start : start + width].split())
    return ("…" if start else "") + text + ("…" if start + width < len(body) else "")
