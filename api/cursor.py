"""The opaque ``after``/``next`` cursor of ``GET /events``: a store position, base64-encoded."""

from __future__ import annotations

import base64
import binascii

from aggregator.store import Position

# Each half of a position is a 64-bit row number or transaction id; larger is not a cursor
# (it would fail the query, a 500, rather than be a bad request).
_MAX_PART = 2**63 - 1


def encode_cursor(position: Position) -> str:
    tx, seq = position
    return base64.urlsafe_b64encode(f"pos:{tx}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position | None:
    """The position a cursor carries: ``pos:TX:SEQ``, or ``seq:N`` as issued before (0, N)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, rest = text.partition(":")
    if prefix == "seq":
        seq = _part(rest)
        return None if seq is None else (0, seq)
    if prefix == "pos":
        tx_text, _, seq_text = rest.partition(":")
        tx, seq = _part(tx_text), _part(seq_text)
        return None if tx is None or seq is None else (tx, seq)
    return None


def _part(number: str) -> int | None:
    # ASCII digits only (str.isdigit() also takes "²", which int() refuses), and few enough
    # for int() (it refuses thousands).
    if not (number.isascii() and number.isdigit()) or len(number) > 19:
        return None
    value = int(number)
    return value if value <= _MAX_PART else None
