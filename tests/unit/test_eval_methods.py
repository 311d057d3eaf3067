"""Evaluation plumbing without services: method specs, query/qrels files, the tuning grid and
cross-validation, summaries with bootstrap intervals, the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrid_search.errors import ConfigurationError, ValidationError
from hybrid_search.evaluation.data import (
    EvalQuery,
    fingerprint,
    judged_queries,
    judgments,
    read_qrels,
    read_queries,
    sample,
)
from hybrid_search.evaluation.methods import parse_method, parse_methods
from hybrid_search.evaluation.runner import per_query_metrics, summarise
from hybrid_search.evaluation.tuning import (
    FusionConfig,
    cross_validate,
    folds_of,
    fuse_offline,
    grid,
    held_out_rankings,
    random_configs,
    simplex_weights,
)
from hybrid_search.ranking.fusion import Hit, fuse
from hybrid_search.search import RETRIEVERS, SearchQuery

pytestmark = pytest.mark.unit

# ---- method specs -----------------------------------------------------------------------------------------


def test_single_retrievers_turn_every_other_one_off() -> None:
    for spec, name in (("bm25", "bm25"), ("text-knn", "text_knn"), ("image_knn", "image_knn")):
        params = parse_method(spec).query_params()
        assert params["fusion"] == "linear"
        assert params["weights"] == {r: 1.0 if r == name else 0.0 for r in RETRIEVERS}
    assert parse_method("bm25@50").query_params()["rank_window"] == 50


def test_fusion_specs() -> None:
    assert parse_method("linear").query_params() == {"fusion": "linear"}
    assert parse_method("linear:dbsf").query_params() == {"fusion": "linear", "normaliser": "dbsf"}
    # a number is the text-kNN share: bm25 = 1 - a
    assert parse_method("linear:minmax:0.3").query_params() == {
        "fusion": "linear",
        "normaliser": "minmax",
        "weights": {"bm25": 0.7, "text_knn": 0.3},
    }
    assert parse_method("rrf:60").query_params() == {"fusion": "rrf", "rank_constant": 60.0}
    assert parse_method("rrf:20:bm25=2,text-knn=1@200").query_params() == {
        "fusion": "rrf",
        "rank_constant": 20.0,
        "weights": {"bm25": 2.0, "text_knn": 1.0},
        "rank_window": 200,
    }
    assert parse_method("native").query_params() == {"fusion": "native"}
    assert parse_method("native:0.5").query_params()["weights"] == {"bm25": 0.5, "text_knn": 0.5}
    assert parse_method("tuned").query_params() == {} and parse_method("tuned").tuned
    assert parse_method("learned").query_params() == {"fusion": "learned"}
    assert parse_method("learned@200").query_params() == {"fusion": "learned", "rank_window": 200}
    # every spec builds a valid SearchQuery
    for spec in ("bm25", "linear:l2:0.9@150", "rrf:1", "native", "tuned", "text-knn", "learned"):
        SearchQuery(text="drill", size=100, **parse_method(spec).query_params())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("bm26", "unknown method"),
        ("linear:cosine", "unknown normaliser"),
        ("linear:minmax:1.5", "between 0 and 1"),
        ("linear:minmax:bm25=-1", "negative"),
        ("linear:minmax:bm25=0,text_knn=0", "every weight is zero"),
        ("linear:minmax:bm25=1,bm25=2", "given twice"),
        ("linear:minmax:clip=1", "not retriever=number"),
        ("rrf:0", "must be > 0"),
        ("rrf:abc", "not a number"),
        ("rrf:60:0.5:extra", "at most two"),
        ("bm25:0.5", "takes no parameters"),
        ("tuned@100", "takes no parameters"),
        ("linear@0", "rank window"),
        ("linear@many", "rank window"),
        ("native:0.5:0.5", "at most one"),
        ("learned:0.5", "takes no parameters"),
    ],
)
def test_bad_specs_name_the_spec(spec: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        parse_method(spec)
    assert repr(spec) in str(raised.value)


def test_parse_methods_splits_on_spaces_and_refuses_duplicates() -> None:
    names = [m.name for m in parse_methods("bm25 text-knn  linear:minmax:bm25=0.7,text_knn=0.3")]
    assert names == ["bm25", "text-knn", "linear:minmax:bm25=0.7,text_knn=0.3"]
    assert [m.name for m in parse_methods(["bm25 native", "rrf:60"])] == ["bm25", "native", "rrf:60"]
    with pytest.raises(ValidationError, match="given twice"):
        parse_methods("bm25 bm25")
    with pytest.raises(ValidationError, match="no methods"):
        parse_methods("   ")


# ---- query and qrels files --------------------------------------------------------------------------------


def test_read_text_queries_and_photo_queries(tmp_path: Path) -> None:
    plain = tmp_path / "q.tsv"
    plain.write_text("q1\tcordless drill\n\nq2\t  red   paint \n", encoding="utf-8")
    assert read_queries(plain) == [EvalQuery("q1", "cordless drill"), EvalQuery("q2", "red   paint")]
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"x")
    photos = tmp_path / "photos.tsv"
    photos.write_text(
        "qid\ttext\timage\np1\t\timg/a.jpg\np2\tlike this but red\timg/a.jpg\np3\tjust text\t\n"
    )
    got = read_queries(photos)
    assert got[0] == EvalQuery("p1", None, tmp_path / "img" / "a.jpg")
    assert got[1].text == "like this but red" and got[1].image == tmp_path / "img" / "a.jpg"
    assert got[2] == EvalQuery("p3", "just text", None)
    image_only = tmp_path / "image_only.tsv"
    image_only.write_text(f"qid\timage\nz\t{tmp_path / 'img' / 'a.jpg'}\n")
    assert read_queries(image_only) == [EvalQuery("z", None, tmp_path / "img" / "a.jpg")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no queries"),
        ("q1\tdrill\nq1\tpaint\n", ":2: query id 'q1' appears twice"),
        ("q1\tdrill\textra\n", ":1: expected 2 tab-separated columns"),
        ("q1 drill\n", ":1: expected 2"),
        ("qid\ttext\timage\nq1\t\t\n", ":2: query 'q1' has neither text nor an image"),
        ("qid\ttext\timage\nq1\tx\tmissing.jpg\n", r":2: image file .*missing\.jpg does not exist"),
        ("qid\ttitle\n", ":1: header columns must be"),
        ("qid\n", "needs a text or an image column"),
        ("qid\ttext\n", "no queries after the header"),
        ("\tdrill\n", ":1: empty query id"),
    ],
)
def test_bad_query_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "queries.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValidationError, match=message) as raised:
        read_queries(path)
    assert str(path) in str(raised.value)


def test_read_qrels_and_judgments(tmp_path: Path) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_text("qid\tdoc\tgrade\nq1\td1\t3\nq1\td2\t2.33\nq1\td3\t1\nq2\td9\t2\n")
    grades = read_qrels(path)
    assert grades == {"q1": {"d1": 3.0, "d2": 2.33, "d3": 1.0}, "q2": {"d9": 2.0}}
    judged = judgments(grades, grade_offset=1, relevant_grade=2.33)
    assert judged.gains["q1"] == {"d1": 2.0, "d2": pytest.approx(1.33), "d3": 0.0}
    assert judged.relevant == {"q1": frozenset({"d1", "d2"}), "q2": frozenset()}
    kept, missing = judged_queries([EvalQuery("q2", "x"), EvalQuery("q7", "y")], judged)
    assert [q.qid for q in kept] == ["q2"] and missing == ["q7"]
    with pytest.raises(
        ValidationError, match="q1, document d3: grade 1 minus the grade offset 2 is negative"
    ):
        judgments(grades, grade_offset=2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1\td1\n", ":1: expected 3 tab-separated columns"),
        ("q1\td1\tgood\n", ":1: grade 'good' is not a number"),
        ("q1\td1\tnan\n", ":1: grade 'nan' is not finite"),
        ("q1\td1\t1\nq1\td1\t2\n", ":2: q1 / d1 is judged twice"),
        ("q1\t\t1\n", ":1: empty query id or document id"),
        ("\n\n", "no judgments"),
    ],
)
def test_bad_qrels_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_text(content)
    with pytest.raises(ValidationError, match=message):
        read_qrels(path)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"queries file .*nope\.tsv does not exist"):
        read_queries(tmp_path / "nope.tsv")
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes("q1\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValidationError, match="not UTF-8"):
        read_qrels(bad)


def test_sample_and_fingerprint() -> None:
    queries = [EvalQuery(f"q{i}", "t") for i in range(20)]
    picked = sample(queries, 5, seed=1)
    assert len(picked) == 5 and picked == sample(queries, 5, seed=1)
    assert [queries.index(q) for q in picked] == sorted(queries.index(q) for q in picked)  # file order
    assert sample(queries, None) == queries and sample(queries, 50) == queries
    with pytest.raises(ValidationError):
        sample(queries, 0)
    assert fingerprint(["b", "a"]) == fingerprint(["a", "b"]) != fingerprint(["a", "c"])


# ---- tuning -----------------------------------------------------------------------------------------------


def test_simplex_weights_and_grid() -> None:
    two = simplex_weights(["bm25", "text_knn"], 4)
    assert [dict(w) for w in two] == [
        {"bm25": 0.0, "text_knn": 1.0},
        {"bm25": 0.25, "text_knn": 0.75},
        {"bm25": 0.5, "text_knn": 0.5},
        {"bm25": 0.75, "text_knn": 0.25},
        {"bm25": 1.0, "text_knn": 0.0},
    ]
    assert len(simplex_weights(["bm25", "text_knn", "image_knn"], 10)) == 66  # C(12, 2)
    configs = grid(
        ["text_knn", "bm25"], normalisers=["minmax", "dbsf"], rank_constants=[60], windows=[100], steps=4
    )
    assert len(configs) == 2 * 5 + 1 * 5
    assert configs[0].weights == (("bm25", 0.0), ("text_knn", 1.0))  # RETRIEVERS order, whatever was given
    with pytest.raises(ValidationError, match="retrievers to tune"):
        grid(["bm25", "clip"])


def test_config_label_is_an_eval_method_with_the_same_parameters() -> None:
    config = FusionConfig("linear", (("bm25", 0.7), ("text_knn", 0.3)), 200, normaliser="zscore")
    assert config.label() == "linear:zscore:bm25=0.7,text_knn=0.3@200"
    parsed = parse_method(config.label()).query_params()
    assert parsed == {**config.as_dict(), "weights": {"bm25": 0.7, "text_knn": 0.3}}
    rrf = FusionConfig("rrf", (("bm25", 0.5), ("text_knn", 0.5)), 100, rank_constant=20)
    assert parse_method(rrf.label()).query_params()["rank_constant"] == 20.0
    pinned = rrf.query_params(present=["bm25"])["weights"]
    assert pinned["bm25"] == 0.5 and pinned["text_knn"] == 0.0 and set(pinned) == set(RETRIEVERS)
    with pytest.raises(ValidationError):
        FusionConfig("native", (("bm25", 1.0),), 100)
    with pytest.raises(ValidationError):
        FusionConfig("rrf", (("bm25", 1.0),), 100)  # no rank constant
    with pytest.raises(ValidationError):
        FusionConfig("linear", (("bm25", 0.0),), 100, normaliser="minmax")


def test_random_search_is_seeded_and_stays_in_the_space() -> None:
    configs = random_configs(["bm25", "text_knn"], 30, seed=4, windows=[50, 100], rank_constants=[10])
    with pytest.raises(ValidationError, match="rank window 5 must be from 10"):
        random_configs(["bm25"], 3, windows=[5])
    assert configs == random_configs(["bm25", "text_knn"], 30, seed=4, windows=[50, 100], rank_constants=[10])
    assert {c.rank_window for c in configs} <= {50, 100}
    assert all(c.rank_constant == 10 for c in configs if c.fusion == "rrf")
    assert all(abs(sum(w for _, w in c.weights) - 1) < 0.01 for c in configs)


def test_offline_fusion_leaves_out_zero_weight_lists() -> None:
    lists = {
        "bm25": [Hit("a", 9.0), Hit("b", 5.0), Hit("c", 1.0)],
        "text_knn": [Hit("c", 0.9), Hit("d", 0.8), Hit("a", 0.7)],
    }
    only_knn = FusionConfig("linear", (("bm25", 0.0), ("text_knn", 1.0)), 100, normaliser="minmax")
    # with the zero-weight list kept, its documents would still be candidates (b with score 0)
    assert [d for d, _ in fuse_offline(lists, only_knn, 10)] == ["c", "d", "a"]
    both = FusionConfig("linear", (("bm25", 0.5), ("text_knn", 0.5)), 100, normaliser="minmax")
    expected = fuse("linear", lists, {"bm25": 0.5, "text_knn": 0.5}, normaliser="minmax", limit=2)
    assert fuse_offline(lists, both, 2) == [(f.doc_id, f.score) for f in expected]
    # a configuration naming a retriever the query did not run (a photo retriever on a text query)
    photo = FusionConfig("rrf", (("bm25", 1.0), ("image_knn", 1.0)), 100, rank_constant=60)
    assert [d for d, _ in fuse_offline(lists, photo, 10)] == ["a", "b", "c"]


def test_folds_partition_the_queries() -> None:
    folds = folds_of(11, 3, seed=5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(11))
    assert sorted(len(f) for f in folds) == [3, 4, 4]
    assert [f.tolist() for f in folds] == [f.tolist() for f in folds_of(11, 3, seed=5)]
    with pytest.raises(ValidationError, match="folds must be"):
        folds_of(3, 5)
    with pytest.raises(ValidationError, match="folds must be"):
        folds_of(10, 1)


def test_cross_validation_chooses_on_the_other_folds_only() -> None:
    # config 0 is best on queries 0-3, config 1 on queries 4-7; each fold must pick the config that wins on
    # the queries *outside* it, and score it on its own queries only
    scores = np.array([[0.9] * 4 + [0.1] * 4, [0.1] * 4 + [0.8] * 4])
    folds = cross_validate(scores, 2, seed=0)
    assert sorted(q for f in folds for q in f.held_out) == list(range(8))
    for fold in folds:
        train = [q for q in range(8) if q not in fold.held_out]
        means = scores[:, train].mean(axis=1)
        assert fold.chosen == int(np.argmax(means))
        assert fold.held_out_mean == pytest.approx(scores[fold.chosen, list(fold.held_out)].mean())
        assert fold.train_mean == pytest.approx(means.max())
    # ties go to the earliest configuration; `among` restricts the choice
    tied = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.9]])
    assert {f.chosen for f in cross_validate(tied, 2, among=[0, 1])} == {0}
    assert {f.chosen for f in cross_validate(tied, 2)} == {2}


def test_held_out_rankings_use_each_folds_choice() -> None:
    lists = {"bm25": [Hit("a", 2.0), Hit("b", 1.0)], "text_knn": [Hit("b", 0.9), Hit("a", 0.1)]}
    candidates = {100: {"q0": lists, "q1": lists}}
    bm25 = FusionConfig("linear", (("bm25", 1.0), ("text_knn", 0.0)), 100, normaliser="minmax")
    knn = FusionConfig("linear", (("bm25", 0.0), ("text_knn", 1.0)), 100, normaliser="minmax")
    scores = np.array([[1.0, 0.0], [0.0, 1.0]])  # q0 prefers bm25, q1 prefers knn
    folds = cross_validate(scores, 2)
    rankings = held_out_rankings(candidates, [bm25, knn], folds, ["q0", "q1"])
    # q0 is held out while q1 trains: knn is chosen for it, and vice versa (the fit never sees its own query)
    assert rankings == {"q0": ["b", "a"], "q1": ["a", "b"]}


# ---- summaries --------------------------------------------------------------------------------------------


def test_per_query_metrics_leave_queries_without_relevant_documents_out_of_recall() -> None:
    judged = judgments({"q1": {"a": 3, "b": 1}, "q2": {"c": 2}}, grade_offset=1, relevant_grade=2.5)
    metrics = per_query_metrics({"q1": ["b", "a"], "q2": ["c"]}, judged, ["q1", "q2"])
    assert metrics["ndcg@10"] == {"q1": pytest.approx(2 / np.log2(3) / 2), "q2": 1.0}
    assert metrics["recall@1"] == {"q1": 0.0} and metrics["mrr@10"] == {"q1": 0.5}
    summary = summarise({"m": metrics, "base": metrics}, latencies={"m": [3.0, 1.0, 2.0]}, baseline="base")
    assert summary["m"]["ndcg@10"] == pytest.approx((2 / np.log2(3) / 2 + 1) / 2)
    assert summary["m"]["recall@100"] == 1.0  # averaged over q1 only
    assert summary["m"]["p50_ms"] == 2.0
    assert summary["m"]["vs_baseline"]["ndcg@10"] == {"diff": 0.0, "low": 0.0, "high": 0.0}
    assert "vs_baseline" not in summary["base"] and "p50_ms" not in summary["base"]
    with pytest.raises(ValidationError, match="baseline"):
        summarise({"m": metrics}, baseline="bm25")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    from hybrid_search.evaluation.plot import plot_methods

    summary = {
        "bm25": {"ndcg@10": 0.35, "condensed_ndcg@10": 0.6, "recall@10": 0.3, "recall@100": 0.7, "mrr@10": 0.4},
        "linear": {
            "ndcg@10": 0.36, "condensed_ndcg@10": 0.62, "recall@10": 0.31, "recall@100": 0.75, "mrr@10": 0.41,
            "vs_baseline": {"ndcg@10": {"diff": 0.01, "low": 0.004, "high": 0.016}},
        },
    }  # fmt: skip
    path = plot_methods(summary, tmp_path / "out" / "methods.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigurationError, match=r"\.png"):
        plot_methods(summary, tmp_path / "methods.svg")
