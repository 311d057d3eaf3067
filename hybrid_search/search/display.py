"""The page's display fields, kept per product revision so a product shown again costs no ``_mget``.

A hit's stored ``_source`` holds every vector of the product (one per photo for a product with photos); the
engine parses all of it to return the few display fields, which makes the ``_mget`` of a page slow. The
fields of one *revision* of a product never change: retrieval hits carry ``_index``, ``_seq_no`` and
``_primary_term`` (any write to the document gives it a new sequence number; a new index version is another
``_index``), so ``(index, id, seq_no, primary_term)`` names exactly one stored version and its fields can be
reused as they are. A product written since is a new key and is read again: the cache never returns fields of
an older revision. Entries also expire after ``ttl_s`` (an index deleted and recreated under the same name
restarts its sequence numbers) and the least recently used go first beyond ``size``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from hybrid_search.search.bodies import Revision

Key = tuple[str, str, int, int]  # (concrete index, product id, seq_no, primary_term)
DEFAULT_TTL_S = 300.0


def revision_key(doc_id: str, revision: Revision | None) -> Key | None:
    return None if revision is None else (revision[0], doc_id, revision[1], revision[2])


def _copy(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: list(value) if isinstance(value, list) else value for name, value in fields.items()}


class DisplayCache:
    """``{(index, id, seq_no, primary_term): display fields}``, least recently used first out; thread-safe.

    ``size`` 0 keeps nothing. Values are copied in and out, so callers may change what they get.
    """

    def __init__(self, size: int, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._entries: OrderedDict[Key, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[Key]) -> dict[Key, dict[str, Any]]:
        """The cached fields of ``keys`` (those present and not expired)."""
        now = time.monotonic()
        found: dict[Key, dict[str, Any]] = {}
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None or now - entry[0] > self.ttl_s:
                    if entry is not None:
                        del self._entries[key]
                    self.misses += 1
                    continue
                self._entries.move_to_end(key)
                found[key] = _copy(entry[1])
                self.hits += 1
        return found

    def put(self, key: Key, fields: Mapping[str, Any]) -> None:
        if self.size < 1:
            return
        with self._lock:
            self._entries[key] = (time.monotonic(), _copy(fields))
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["DEFAULT_TTL_S", "DisplayCache", "Key", "revision_key"]
