"""The search syntax of ?q=: how it is read, what FTS5 is given, and what is refused."""

from __future__ import annotations

import pytest

from aggregator.store.search import SearchSyntaxError, Term, fts5_query, parse


@pytest.mark.parametrize(
    ("q", "fts5"),
    [
        ("timeout", '("timeout")'),
        ("timeout refused", '("timeout" AND "refused")'),
        ('"connection refused"', '("connection refused")'),
        ("a b or c", '("a" AND "b") OR ("c")'),
        ("a OR b c", '("a") OR ("b" AND "c")'),
        ("a -b", '(("a") NOT "b")'),
        ('a -"b c" -d', '((("a") NOT "b c") NOT "d")'),
        ("a - b", '(("a") NOT "b")'),  # a lone - excludes the next term, as in PostgreSQL
        # "or" is an operator only between two terms; elsewhere it is a word.
        ("or a", '("or" AND "a")'),
        ("a or", '("a" AND "or")'),
        ("a or or b", '("a") OR ("or" AND "b")'),
        ('a "or" b', '("a" AND "or" AND "b")'),
        # FTS5's own operators and quotes are words and characters inside a quoted string.
        ("NEAR(a b) AND NOT c*", '("NEAR(a" AND "b)" AND "AND" AND "NOT" AND "c*")'),
        ('x"y', '("x" AND "y")'),
        ("!!! a", '("a")'),  # a term without a letter or digit is no term
    ],
)
def test_what_fts5_is_given(q: str, fts5: str) -> None:
    assert fts5_query(parse(q)) == fts5


def test_a_parsed_query_is_alternatives_of_terms() -> None:
    assert parse('a -"b c" or d') == ((Term("a"), Term("b c", excluded=True)), (Term("d"),))


@pytest.mark.parametrize("q", ["", "   ", "!!!", '""', "-a", "-a -b", "-a or b", "a or -b"])
def test_nothing_to_find_is_refused(q: str) -> None:
    with pytest.raises(SearchSyntaxError):
        parse(q)
