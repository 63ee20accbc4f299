"""The search syntax of ``GET /events?q=``, one for both stores.

What a user can type is PostgreSQL's ``websearch_to_tsquery`` syntax, which the PostgreSQL store
hands ``q`` to as it is:

* ``timeout refused``: both words (AND);
* ``"connection refused"``: the words next to each other, in that order;
* ``timeout or refused``: either (``or`` between two terms, any case; AND binds tighter, so
  ``a b or c`` is ``(a AND b) OR c``);
* ``-debug``: without the word (also ``-"a phrase"``).

Words are matched whole and case-insensitively; punctuation separates words. SQLite's FTS5 has
a syntax of its own (and raises on a stray quote or a bare ``NOT``), so :func:`fts5_query`
rewrites a parsed query into it, every word quoted. :func:`parse` also refuses what neither
store can search with an index: nothing to look for, or a part made of exclusions only
(``-debug`` alone would mean "every event without the word").
"""

from __future__ import annotations

from dataclasses import dataclass


class SearchSyntaxError(ValueError):
    """``q`` cannot be searched; the message says why, for the 422."""


@dataclass(frozen=True)
class Term:
    """A word or a quoted phrase (its words in order), maybe excluded (``-``)."""

    text: str
    excluded: bool = False


# Alternatives (OR) of conjunctions (AND) of terms.
Query = tuple[tuple[Term, ...], ...]

_OR = object()


def parse(q: str) -> Query:
    """``q`` as alternatives of terms; SearchSyntaxError for what cannot be searched."""
    items = _items(q)
    groups: list[list[Term]] = [[]]
    for item in items:
        if isinstance(item, Term):
            groups[-1].append(item)
        else:
            groups.append([])
    alternatives = tuple(tuple(group) for group in groups if group)
    if not alternatives:
        raise SearchSyntaxError("q has no word to search for (words are letters and digits)")
    if any(all(term.excluded for term in group) for group in alternatives):
        raise SearchSyntaxError(
            "each part of q needs a word to find, not only words to exclude ('-word')"
        )
    return alternatives


def fts5_query(query: Query) -> str:
    """The FTS5 MATCH expression of a parsed query: every term a quoted string, grouped."""
    alternatives = []
    for group in query:
        wanted = " AND ".join(_quoted(t.text) for t in group if not t.excluded)
        expression = f"({wanted})"
        for term in group:
            if term.excluded:
                # FTS5's NOT is binary: (a AND b) NOT c NOT d.
                expression = f"({expression} NOT {_quoted(term.text)})"
        alternatives.append(expression)
    return " OR ".join(alternatives)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _items(q: str) -> list[object]:
    """Terms and ``or`` operators, as websearch_to_tsquery reads them.

    ``or`` is an operator between two terms only; at either end, or after another operator, it
    is a word. A ``-`` negates the term it starts (or the next one, standing alone).
    """
    raw: list[tuple[str, bool, bool]] = []  # (text, quoted, excluded)
    position, length = 0, len(q)
    excluded = False
    while position < length:
        char = q[position]
        if char.isspace():
            position += 1
        elif char == "-":
            excluded = True
            position += 1
        elif char == '"':
            end = q.find('"', position + 1)
            end = length if end < 0 else end
            raw.append((q[position + 1 : end], True, excluded))
            excluded = False
            position = end + 1
        else:
            end = position
            while end < length and not q[end].isspace() and q[end] != '"':
                end += 1
            raw.append((q[position:end], False, excluded))
            excluded = False
            position = end
    items: list[object] = []
    for index, (text, quoted, negated) in enumerate(raw):
        is_or = not quoted and not negated and text.lower() == "or"
        if is_or and items and items[-1] is not _OR and index + 1 < len(raw):
            items.append(_OR)
        elif any(char.isalnum() for char in text):
            items.append(Term(text, negated))
    if items and items[-1] is _OR:
        items.pop()
    return items
