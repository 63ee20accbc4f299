"""URLs as they may be shown: in a log line or an error message, never with a password."""

from __future__ import annotations

import re

# Where each URL of a string starts: ``AGG_AMQP_URL`` may list several, comma-separated, and a
# PostgreSQL URL may name several hosts (``postgresql://u:p@h1:5432,h2:5432/db``).
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# libpq-style URLs may carry the password as a query parameter as well.
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redacted(url: str) -> str:
    """``url`` with every password replaced by ``***``; anything else left as it was.

    Works on text that is not a valid URL too (an unencoded ``@`` in a password, a bad port):
    this is what an error message about a bad URL shows, so it must not need a parsable one.
    """
    starts = [match.start() for match in _URL_START.finditer(url)]
    if not starts:
        return url
    pieces = [url[: starts[0]]]
    for start, end in zip(starts, [*starts[1:], len(url)], strict=True):
        pieces.append(_redact_one(url[start:end]))
    return "".join(pieces)


def _redact_one(url: str) -> str:
    scheme, _, rest = url.partition("://")
    # The user info ends at the last "@", as a password that was not percent-encoded may hold
    # "@", "/", "?" or "#" itself. An "@" further on (in a query) only hides more than needed.
    user_info, at, after = rest.rpartition("@")
    user, colon, _ = user_info.partition(":")
    if at and colon:
        rest = f"{user}:***@{after}"
    return f"{scheme}://" + _PASSWORD_PARAMETER.sub(r"\1***", rest)
