"""Photo search pieces that are pure: kind-aware photo fusion, nested photo vectors in both dialects, the
Hellinger colour encoder, and the photo evaluation protocols."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid_search.engine.definition import EncoderRef, load_definition, nested_path, vector_values
from hybrid_search.engine.dialects import (
    elasticsearch_index_body,
    elasticsearch_search_body,
    opensearch_index_body,
    opensearch_search_body,
)
from hybrid_search.engine.request import KnnClause, SearchRequest
from hybrid_search.errors import ValidationError
from hybrid_search.evaluation.photos import (
    PhotoSet,
    catalogue_records,
    evaluate_rankings,
    luma_photos,
    photo_view,
    product_ranking,
    record_categories,
)
from hybrid_search.ranking.fusion import Hit
from hybrid_search.ranking.photo_fusion import KIND, jaccard, kind_agreement, photo_fusion, score_to_cosine

pytestmark = pytest.mark.unit

ENCODERS = {
    "text": (EncoderRef("minilm", "t"), 384),
    "image": (EncoderRef("efficientnet-lite0", "i"), 1280),
    "colour": (EncoderRef("colour-hsv-16x8x8-sqrt", "c"), 1024),
    "photo_image": (EncoderRef("efficientnet-lite0", "i"), 1280),
    "photo_colour": (EncoderRef("colour-hsv-16x8x8-sqrt", "c"), 1024),
}
FILTER = {"term": {"categories": "Jackets"}}


# ------------------------------------------------------------------------------------ kind-aware fusion


def test_jaccard_and_kind_agreement() -> None:
    assert jaccard({"Men", "Tops"}, {"Men", "Bottoms"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 0.0
    # neighbours weighted 1, 1/2, 1/3: (1 * 1 + 1/2 * 1/3 + 1/3 * 0) / (1 + 1/2 + 1/3)
    neighbours = [{"Men", "Tops"}, {"Men", "Bottoms"}, {"Gear"}]
    assert kind_agreement({"Men", "Tops"}, neighbours) == pytest.approx((1 + 1 / 6) / (11 / 6))
    assert kind_agreement({"Men"}, []) == 0.0
    assert score_to_cosine(0.75) == 0.5


def test_photo_fusion_is_the_weighted_cosine_sum_plus_the_log_kind() -> None:
    results = {
        "image_knn": [Hit("a", 0.9), Hit("b", 0.8)],
        "colour_knn": [Hit("b", 0.95), Hit("c", 0.7)],
    }
    categories = {"a": ["Tops"], "b": ["Tops"], "c": ["Gear"]}
    fused = photo_fusion(
        results,
        {"image_knn": 0.5, "colour_knn": 0.5},
        categories,
        kind_weight=0.3,
        neighbours=2,
        epsilon=0.05,
    )
    kind_tops, kind_gear = math.log(1.0 + 0.05), math.log(0.0 + 0.05)  # both neighbours (a, b) are Tops
    expected = {
        "a": 0.5 * 0.8 + 0.5 * 0.4 + 0.3 * kind_tops,  # colour floor: lowest cosine it returned, 2*0.7-1
        "b": 0.5 * 0.6 + 0.5 * 0.9 + 0.3 * kind_tops,
        "c": 0.5 * 0.6 + 0.5 * 0.4 + 0.3 * kind_gear,  # image floor: 2*0.8-1
    }
    assert [f.doc_id for f in fused] == ["b", "a", "c"]
    for hit in fused:
        assert hit.score == pytest.approx(expected[hit.doc_id])
        assert hit.score == pytest.approx(math.fsum(c.weighted for c in hit.contributions.values()))
        assert set(hit.contributions) == {"image_knn", "colour_knn", KIND}
    b = fused[0].contributions
    assert (b["colour_knn"].raw_score, b["colour_knn"].rank, b["colour_knn"].normalised) == (
        0.95,
        1,
        pytest.approx(0.9),
    )
    assert b[KIND].raw_score == 1.0 and b[KIND].normalised == pytest.approx(kind_tops)
    assert fused[2].contributions["image_knn"].raw_score is None  # c was not in the image list


def test_the_kind_term_lifts_the_voted_kind_over_a_closer_colour() -> None:
    # the colour retriever prefers a bag of the same colour; the image neighbours say "hoodie"
    results = {
        "image_knn": [Hit("hoodie-1", 0.9), Hit("hoodie-2", 0.88), Hit("bag", 0.85)],
        "colour_knn": [Hit("bag", 0.99), Hit("hoodie-2", 0.9), Hit("hoodie-1", 0.8)],
    }
    categories = {"hoodie-1": ["Men", "Hoodies"], "hoodie-2": ["Men", "Hoodies"], "bag": ["Gear", "Bags"]}
    weights = {"image_knn": 0.5, "colour_knn": 0.5}
    without = photo_fusion(results, weights, categories, kind_weight=0.0)
    with_kind = photo_fusion(results, weights, categories, kind_weight=0.3)
    assert without[0].doc_id == "bag"
    assert [f.doc_id for f in with_kind] == ["hoodie-2", "hoodie-1", "bag"]
    assert KIND not in without[0].contributions


def test_without_categories_the_kind_term_changes_no_order() -> None:
    results = {"image_knn": [Hit("a", 0.9), Hit("b", 0.6)], "colour_knn": [Hit("b", 0.99), Hit("a", 0.5)]}
    weights = {"image_knn": 0.5, "colour_knn": 0.5}
    plain = photo_fusion(results, weights, {}, kind_weight=0.0)
    kind = photo_fusion(results, weights, {}, kind_weight=0.7, limit=1)
    assert [f.doc_id for f in kind] == [plain[0].doc_id]
    assert kind[0].score == pytest.approx(plain[0].score + 0.7 * math.log(0.05))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind_weight": -1.0}, "kind_weight must be >= 0"),
        ({"kind_weight": float("nan")}, "kind_weight must be a finite number"),
        ({"kind_weight": 0.3, "epsilon": 0.0}, "epsilon must be > 0"),
        ({"kind_weight": 0.3, "neighbours": 0}, "neighbours must be >= 1"),
        ({"kind_weight": 0.3, "kind_source": "text_knn"}, "needs the text_knn hits"),
    ],
)
def test_photo_fusion_refuses_bad_parameters(kwargs: dict[str, Any], message: str) -> None:
    results = {"image_knn": [Hit("a", 0.9)]}
    with pytest.raises(ValidationError, match=message):
        photo_fusion(results, {"image_knn": 1.0}, {}, **kwargs)


def test_photo_fusion_refuses_bad_lists() -> None:
    with pytest.raises(ValidationError, match="no weight for retriever"):
        photo_fusion({"image_knn": [Hit("a", 0.9)]}, {}, {}, kind_weight=0.0)
    with pytest.raises(ValidationError, match="twice"):
        photo_fusion({"image_knn": [Hit("a", 0.9), Hit("a", 0.8)]}, {"image_knn": 1.0}, {}, kind_weight=0.0)
    with pytest.raises(ValidationError, match="non-finite"):
        photo_fusion({"image_knn": [Hit("a", math.inf)]}, {"image_knn": 1.0}, {}, kind_weight=0.0)


# ------------------------------------------------------------------------------- nested photo vectors


def test_nested_paths_and_vector_values() -> None:
    assert nested_path("photos.image_vector") == "photos"
    assert nested_path("image_vector") is None
    doc = {"image_vector": [1.0], "photos": [{"image_vector": [1.0, 2.0]}, {"colour_vector": [3.0]}]}
    assert vector_values(doc, "image_vector") == [[1.0]]
    assert vector_values(doc, "photos.image_vector") == [[1.0, 2.0]]
    assert vector_values(doc, "photos.colour_vector") == [[3.0]]
    assert vector_values({"photos": None}, "photos.image_vector") == []
    assert vector_values({}, "colour_vector") == []


def test_both_dialects_render_every_photo_as_a_nested_object() -> None:
    definition = load_definition(ENCODERS)
    photo_fields = {v.name: v.path for v in definition.vectors if v.path}
    assert photo_fields == {"photos.image_vector": "photos", "photos.colour_vector": "photos"}
    opensearch = opensearch_index_body(definition)["mappings"]["properties"]
    assert opensearch["photos"]["type"] == "nested"
    for name, dim in (("image_vector", 1280), ("colour_vector", 1024)):
        field = opensearch["photos"]["properties"][name]
        assert (field["type"], field["dimension"], field["method"]["engine"]) == ("knn_vector", dim, "lucene")
        assert opensearch[name]["dimension"] == dim  # the main photo's own field stays
    elasticsearch = elasticsearch_index_body(definition)["mappings"]["properties"]
    assert elasticsearch["photos"]["type"] == "nested"
    assert elasticsearch["photos"]["properties"]["image_vector"]["type"] == "dense_vector"
    assert elasticsearch["photos"]["properties"]["colour_vector"]["dims"] == 1024
    assert "photos.image_vector" not in opensearch and "photos.image_vector" not in elasticsearch
    assert definition.meta()["hybrid_search"]["vectors"]["photos.image_vector"]["dim"] == 1280


def test_opensearch_wraps_a_nested_knn_in_a_max_scoring_nested_query() -> None:
    clause = KnnClause("photos.image_vector", (0.1, 0.2), k=50, boost=0.4)
    body = opensearch_search_body(SearchRequest(knn=(clause,), filter=(FILTER,), size=50))
    assert body["query"] == {
        "nested": {
            "path": "photos",
            "score_mode": "max",
            "query": {"knn": {"photos.image_vector": {"vector": [0.1, 0.2], "k": 50, "filter": FILTER}}},
            "boost": 0.4,
        }
    }
    plain = opensearch_search_body(SearchRequest(knn=(KnnClause("image_vector", (0.1,), k=5),), size=5))
    assert plain["query"] == {"knn": {"image_vector": {"vector": [0.1], "k": 5}}}


def test_elasticsearch_takes_the_nested_field_as_it_is() -> None:
    clause = KnnClause("photos.colour_vector", (0.5,), k=20)
    body = elasticsearch_search_body(SearchRequest(knn=(clause,), filter=(FILTER,), size=20))
    assert body["knn"] == [
        {
            "field": "photos.colour_vector",
            "query_vector": [0.5],
            "k": 20,
            "num_candidates": 100,
            "filter": FILTER,
        }
    ]


# ------------------------------------------------------------------------------------ Hellinger colour


def _image(pixels: np.ndarray[Any, Any]) -> Any:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")
    return image_module.fromarray(pixels.astype(np.uint8), "RGB")


def test_hellinger_colour_is_the_square_root_of_the_16x8x8_histogram() -> None:
    from hybrid_search.encoders import DEFAULT_COLOUR_ENCODER, get_encoder

    encoder = get_encoder("colour-hellinger")
    assert DEFAULT_COLOUR_ENCODER == "colour-hellinger"
    assert (encoder.name, encoder.dim, encoder.modality) == ("colour-hsv-16x8x8-sqrt", 1024, "image")
    assert get_encoder("color-hellinger").name == encoder.name
    pixels = np.zeros((10, 10, 3))
    pixels[:, :, 0] = 200  # red, 3/4 of the pixels
    pixels[:, :, 1:] = 20
    pixels[:, :1] = 255  # a white column: background, dropped
    pixels[:, 1:3] = (20, 30, 200)  # blue, 2 of the 9 remaining columns
    vector = encoder.embed_query(_image(pixels))
    assert vector.shape == (1024,) and np.linalg.norm(vector) == pytest.approx(1.0)
    nonzero = np.sort(vector[vector > 0])
    # histogram (2/9, 7/9) -> square roots, then unit length
    expected = np.sqrt([2 / 9, 7 / 9]) / np.linalg.norm(np.sqrt([2 / 9, 7 / 9]))
    assert nonzero == pytest.approx(expected, abs=1e-6)


def test_hellinger_colour_is_more_forgiving_than_the_plain_cosine() -> None:
    from hybrid_search.encoders import get_encoder

    mostly_red = np.zeros((10, 10, 3))
    mostly_red[:] = (200, 20, 20)
    mostly_red[:, 8:] = (20, 30, 200)  # 20% blue
    half_and_half = mostly_red.copy()
    half_and_half[:, 5:] = (20, 30, 200)
    plain, hellinger = get_encoder("colour"), get_encoder("colour-hellinger")
    a, b = _image(mostly_red), _image(half_and_half)
    assert float(hellinger.embed_query(a) @ hellinger.embed_query(b)) > float(
        plain.embed_query(a) @ plain.embed_query(b)
    )


# ------------------------------------------------------------------------------- evaluation protocols


def _tiny_luma(folder: Path) -> None:
    folder.mkdir()
    (folder / "products_flat.csv").write_text(
        "sku,type,name,price,categories,description,colors,sizes,attributes,images,n_variants\n"
        "A1,simple,Alpha Tee,10,Men/Tops,,,,{},p/a1-red_main.jpg|p/a1-red_back.jpg|p/a1-blue_main.jpg,1\n"
        "B2,simple,Beta Bag,20,Gear/Bags,,,,{},p/b2-black_main.jpg|p/b2-black_alt1.jpg,1\n"
        "C3,simple,Gamma Ball,5,Gear,,,,{},p/b2-black_main.jpg,1\n",
        encoding="utf-8",
    )


def test_luma_protocol_reads_queries_and_records(tmp_path: Path) -> None:
    folder = tmp_path / "luma"
    _tiny_luma(folder)
    photos = luma_photos(folder)
    assert [(p.doc_id, p.view) for p in photos.photos] == [
        ("A1", "main"), ("A1", "back"), ("A1", "main"), ("B2", "main"), ("B2", "alt1"), ("C3", "main"),
    ]  # fmt: skip
    assert photos.queries == (1, 4)
    assert photos.relevant(1) == {"A1"}
    assert photo_view("x/mh01-gray_alt1.jpg") == "alt1" and photo_view("ball.jpg") == ""
    records = catalogue_records(photos, folder, without=["p/a1-red_back.jpg", "p/b2-black_alt1.jpg"])
    images = {r["id"]: r.get("images") for r in records}
    assert images["A1"] == [str(folder / "p/a1-red_main.jpg"), str(folder / "p/a1-blue_main.jpg")]
    assert images["B2"] == [str(folder / "p/b2-black_main.jpg")]
    assert record_categories(records) == {"A1": ["Men", "Tops"], "B2": ["Gear", "Bags"], "C3": ["Gear"]}


def test_product_ranking_scores_a_product_by_its_best_photo_and_leaves_the_query_out() -> None:
    docs = ["A", "A", "B", "C"]
    assert product_ranking([0.9, 0.2, 0.5, 0.7], docs) == ["A", "C", "B"]
    assert product_ranking([0.9, 0.2, 0.5, 0.7], docs, exclude=0) == ["C", "B", "A"]
    assert product_ranking([0.9, 0.2, 0.5, 0.7], docs, exclude=0, k=1) == ["C"]
    with pytest.raises(ValidationError, match="one score per photo"):
        product_ranking([0.1], docs)


def test_evaluate_rankings_by_protocol(tmp_path: Path) -> None:
    folder = tmp_path / "luma"
    _tiny_luma(folder)
    item = luma_photos(folder)
    scores = evaluate_rankings(item, {1: ["A1", "B2"], 4: ["A1", "B2"]})
    assert scores.metrics == {"recall@1": 0.5, "recall@10": 1.0} and scores.queries == 2
    with pytest.raises(ValidationError, match="have no ranking"):
        evaluate_rankings(item, {1: ["A1"]})
    kind = PhotoSet("kinds", "kind", item.photos[3:6], (0, 1))  # B2 (Gear), B2, C3
    relabelled = PhotoSet(
        "kinds",
        "kind",
        tuple(
            type(p)(p.key, p.path, f"d{n}", "Gear" if n != 1 else "Bags", p.view)
            for n, p in enumerate(kind.photos)
        ),
        (0, 1),
    )
    result = evaluate_rankings(relabelled, {0: ["d2", "d1"], 1: ["d0", "d2"]})
    assert result.metrics == {"precision@10": pytest.approx((1 / 10 + 0) / 2)}
    with pytest.raises(ValidationError, match="ranks its own photo"):
        evaluate_rankings(relabelled, {0: ["d0"], 1: []})


def test_leave_out_groups_keep_a_products_views_apart(tmp_path: Path) -> None:
    from hybrid_search.evaluation.photos import leave_out_groups

    folder = tmp_path / "luma"
    _tiny_luma(folder)
    photos = luma_photos(folder)
    assert leave_out_groups(photos, 8) == [[1], [4]]  # never more groups than queries
    assert leave_out_groups(photos, 1) == [[1, 4]]
    with pytest.raises(ValidationError, match="groups must be >= 1"):
        leave_out_groups(photos, 0)


def test_memo_encoder_embeds_each_item_once_and_keeps_the_identity() -> None:
    from hybrid_search.encoders import get_encoder
    from hybrid_search.evaluation.photos import MemoEncoder

    memo = MemoEncoder(get_encoder("colour-hellinger"))
    assert (memo.name, memo.version, memo.dim, memo.modality) == (
        "colour-hsv-16x8x8-sqrt",
        "v1-w240-max128",
        1024,
        "image",
    )
    red = np.zeros((4, 4, 3))
    red[:] = (200, 20, 20)
    first = memo.embed_documents([_image(red), _image(red)])
    assert memo.computed == 1 and np.array_equal(first[0], first[1])
    blue = _image(np.full((4, 4, 3), (20, 30, 200)))
    memo.remember(blue, np.ones(1024, dtype=np.float32))  # a vector computed elsewhere comes back as it is
    assert memo.embed_query(blue).tolist() == [1.0] * 1024 and memo.computed == 1
    assert memo.embed_documents([]).shape == (0, 1024)


def test_the_kind_protocol_filters_out_the_query_product() -> None:
    from hybrid_search.evaluation.photos import _WithoutProduct
    from hybrid_search.search import SearchQuery

    filters = _WithoutProduct(category="Tops", exclude="26960")
    assert filters.clauses() == [
        {"term": {"categories": "Tops"}},
        {"bool": {"must_not": [{"ids": {"values": ["26960"]}}]}},
    ]
    assert SearchQuery(image=b"photo", filters=filters).filters is filters
