"""The display cache: keyed by a product's stored revision, least recently used out, copies in and out."""

from __future__ import annotations

import pytest

from hybrid_search.search.bodies import REVISION_FIELD, display_from_docvalues, docvalue_options, hit_revision
from hybrid_search.search.display import DisplayCache, revision_key

pytestmark = pytest.mark.unit


def test_retrieval_asks_for_each_hits_revision() -> None:
    assert docvalue_options()["seq_no_primary_term"] is True


@pytest.mark.parametrize(
    ("hit", "expected"),
    [
        ({"_index": "p-v1", "_seq_no": 7, "_primary_term": 2}, ("p-v1", 7, 2)),
        ({"_index": "p-v1", "_seq_no": 0, "_primary_term": 1}, ("p-v1", 0, 1)),
        ({"_index": "p-v1"}, None),  # asked without seq_no_primary_term
        ({"_index": "p-v1", "_seq_no": -2, "_primary_term": 0}, None),  # unassigned
        ({"_seq_no": 3, "_primary_term": 1}, None),
        ({"_index": "p-v1", "_seq_no": "3", "_primary_term": 1}, None),
    ],
)
def test_hit_revision(hit: dict[str, object], expected: object) -> None:
    assert hit_revision(hit) == expected


def test_docvalue_hits_carry_their_revision_next_to_the_fields() -> None:
    hit = {"_index": "p-v1", "_seq_no": 4, "_primary_term": 1, "fields": {"id": ["A1"], "price": [9.5]}}
    doc_id, fields = display_from_docvalues(hit)
    assert (doc_id, fields[REVISION_FIELD], fields["price"]) == ("A1", ("p-v1", 4, 1), 9.5)
    assert REVISION_FIELD not in display_from_docvalues({"fields": {"id": ["A1"]}})[1]
    assert revision_key("A1", fields[REVISION_FIELD]) == ("p-v1", "A1", 4, 1)
    assert revision_key("A1", None) is None


def test_a_new_revision_is_a_miss() -> None:
    cache = DisplayCache(10)
    cache.put(("p-v1", "A1", 4, 1), {"title": "Old", "colour": ["Red"]})
    assert cache.get_many([("p-v1", "A1", 4, 1)]) == {
        ("p-v1", "A1", 4, 1): {"title": "Old", "colour": ["Red"]}
    }
    assert cache.get_many([("p-v1", "A1", 5, 1), ("p-v2", "A1", 4, 1), ("p-v1", "A1", 4, 2)]) == {}
    assert (cache.hits, cache.misses) == (1, 3)


def test_values_are_copies() -> None:
    cache = DisplayCache(10)
    given = {"colour": ["Red"]}
    cache.put(("i", "A", 1, 1), given)
    given["colour"].append("Blue")
    got = cache.get_many([("i", "A", 1, 1)])[("i", "A", 1, 1)]
    got["colour"].append("Green")
    assert cache.get_many([("i", "A", 1, 1)])[("i", "A", 1, 1)] == {"colour": ["Red"]}


def test_least_recently_used_goes_first() -> None:
    cache = DisplayCache(2)
    for n in range(2):
        cache.put(("i", str(n), 1, 1), {"n": n})
    cache.get_many([("i", "0", 1, 1)])  # 0 is now the most recent
    cache.put(("i", "2", 1, 1), {"n": 2})
    assert sorted(k[1] for k in cache.get_many([("i", str(n), 1, 1) for n in range(3)])) == ["0", "2"]
    assert len(cache) == 2


def test_size_zero_keeps_nothing_and_entries_expire() -> None:
    off = DisplayCache(0)
    off.put(("i", "A", 1, 1), {"n": 1})
    assert (len(off), off.get_many([("i", "A", 1, 1)])) == (0, {})
    expired = DisplayCache(10, ttl_s=-1.0)  # every entry is already older than its lifetime
    expired.put(("i", "A", 1, 1), {"n": 1})
    assert expired.get_many([("i", "A", 1, 1)]) == {}
    assert len(expired) == 0
