"""API keys: who may publish to which topics, read, or administer; from ``AGG_API_KEYS_FILE``.

The file is TOML with one ``[[key]]`` table per key::

    [[key]]
    name = "billing-service"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    scopes = ["publish"]
    topics = ["billing.#", "audit.billing"]

Only the SHA-256 of a token is stored; a presented token is hashed and compared with every key's
hash in constant time. ``topics`` are AMQP topic patterns (``*`` one word, ``#`` any number of
words), ``["#"]`` when left out. The file is read again on SIGHUP, or when it changes on disk
(checked at most once a second), so keys rotate without a restart; a file that does not parse
keeps the keys that were in force and says why.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aggregator.errors import AggregatorError

log = logging.getLogger(__name__)

SCOPES = frozenset({"publish", "read", "admin"})
# How often a request may look at the file's modification time.
CHECK_INTERVAL_S = 1.0


class KeysFileError(AggregatorError):
    """The keys file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset[str]
    topics: tuple[str, ...]

    def may_publish_to(self, topic: str) -> bool:
        return any(topic_matches(pattern, topic) for pattern in self.topics)


def topic_matches(pattern: str, topic: str) -> bool:
    """AMQP topic matching: words split on ``.``, ``*`` is one word, ``#`` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(topic.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_keys(text: str, source: str) -> list[ApiKey]:
    """The keys of a keys file's text; :class:`KeysFileError` naming ``source`` if it is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KeysFileError(f"{source}: not TOML: {exc}") from None
    tables = document.get("key", [])
    if not isinstance(tables, list) or set(document) - {"key"}:
        raise KeysFileError(f"{source}: expected only [[key]] tables")
    keys: list[ApiKey] = []
    for number, table in enumerate(tables, 1):
        where = f"{source}: key {number}"
        name, digest = table.get("name"), table.get("sha256")
        scopes, topics = table.get("scopes"), table.get("topics", ["#"])
        if not isinstance(name, str) or not name or len(name) > 255:
            raise KeysFileError(f"{where}: name must be a string of 1 to 255 characters")
        where = f"{source}: key {name!r}"
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise KeysFileError(f"{where}: sha256 must be 64 hex digits (the token's SHA-256)")
        if not isinstance(scopes, list) or not scopes or set(scopes) - SCOPES:
            raise KeysFileError(f"{where}: scopes must be a non-empty list of {sorted(SCOPES)}")
        if not isinstance(topics, list) or not all(_valid_pattern(t) for t in topics):
            raise KeysFileError(f"{where}: topics must be AMQP topic patterns such as 'app.#'")
        unknown = set(table) - _FIELDS
        if unknown:
            raise KeysFileError(f"{where}: unknown fields {sorted(unknown)}")
        keys.append(ApiKey(name, bytes.fromhex(digest), frozenset(scopes), tuple(topics)))
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        raise KeysFileError(f"{source}: two keys share a name")
    return keys


_FIELDS = frozenset({"name", "sha256", "scopes", "topics"})
_WORD = re.compile(r"[A-Za-z0-9_-]+|\*|#")


def _valid_pattern(pattern: object) -> bool:
    """Words of a topic (letters, digits, ``_-``) or a whole-word ``*`` or ``#``."""
    return isinstance(pattern, str) and all(_WORD.fullmatch(w) for w in pattern.split("."))


class KeyRing:
    """The keys in force, from one file, kept current (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._keys: list[ApiKey] = []
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.reload(strict=True)

    @property
    def names(self) -> list[str]:
        return [key.name for key in self._keys]

    def reload(self, *, strict: bool = False) -> None:
        """Read the file again. ``strict`` (at start): a bad file raises; later it is logged
        and the keys in force stay."""
        try:
            stamp = _stamp(self._path)
            keys = parse_keys(self._path.read_text(), str(self._path))
        except (OSError, KeysFileError) as exc:
            message = exc if isinstance(exc, KeysFileError) else f"{self._path}: {exc.strerror}"
            if strict:
                raise KeysFileError(str(message)) from None
            log.error("API keys not reloaded, the %d in force stay: %s", len(self._keys), message)
            return
        if self._stamp is not None:
            log.info("API keys reloaded from %s: %s", self._path, ", ".join(k.name for k in keys))
        self._keys, self._stamp = keys, stamp

    def reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_INTERVAL_S:
            return
        self._checked = now
        try:
            stamp = _stamp(self._path)
        except OSError:
            return  # gone for a moment (an editor's save, a secret's swap): keep what we have
        if stamp != self._stamp:
            self.reload()

    def authenticate(self, token: str) -> ApiKey | None:
        """The key whose hash is the token's; every key is compared, in constant time."""
        self.reload_if_changed()
        digest = token_digest(token)
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def _stamp(path: Path) -> tuple[int, int, int]:
    status = os.stat(path)
    return (status.st_mtime_ns, status.st_size, status.st_ino)
