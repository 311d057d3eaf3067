"""Evaluation and tuning through the real engine: a small hand-made hardware catalogue with hand-made judgments,
MiniLM text vectors (the CLI embeds queries with the configured encoder, so the index must hold its vectors).

- offline fusion of the cached retriever lists gives exactly the live search's ranking and scores, for every
  normaliser, rank constant, weight and window tried;
- a tuned configuration saved in ``_meta`` becomes the index's default; queries still override it;
- ``evaluate`` scores exactly what the search returns;
- ``hybrid-search eval`` / ``tune`` / ``untune`` as a person runs them (OpenSearch: the CLI's engine comes from
  the settings).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine, create_engine, definition_from_settings
from hybrid_search.errors import ConfigurationError, ValidationError
from hybrid_search.evaluation.data import EvalQuery, judged_queries, judgments, read_qrels, read_queries
from hybrid_search.evaluation.methods import parse_method, parse_methods
from hybrid_search.evaluation.metrics import condensed_ndcg_at_k, ndcg_at_k
from hybrid_search.evaluation.runner import evaluate
from hybrid_search.evaluation.tuning import fetch_candidates, fuse_offline, grid, verify_live
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.search import SearchQuery, SearchService, search_encoders
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

PRODUCTS: list[dict[str, Any]] = [
    {"id": "p01", "title": "DeWalt 20V cordless drill driver kit", "description": "Compact drill with two batteries"},
    {"id": "p02", "title": "Ryobi 18V cordless hammer drill", "description": "Drills masonry and wood"},
    {"id": "p03", "title": "Corded electric drill 7 amp", "description": "Variable speed power drill"},
    {"id": "p04", "title": "Drill bit set titanium 29 piece", "description": "Bits for metal and wood"},
    {"id": "p05", "title": "Interior wall paint red satin 1 gal", "description": "Washable paint for walls"},
    {"id": "p06", "title": "Exterior house paint white 5 gal", "description": "Weather resistant coating"},
    {"id": "p07", "title": "Paint roller kit 9 in", "description": "Roller, tray and brush for walls"},
    {"id": "p08", "title": "Garden hose 50 ft heavy duty", "description": "Kink free rubber water hose"},
    {"id": "p09", "title": "Hose nozzle 8 pattern spray", "description": "Garden watering spray gun"},
    {"id": "p10", "title": "Wood screws 2 in 100 pack", "description": "Zinc plated deck screws"},
    {"id": "p11", "title": "Drywall screws 1-5/8 in coarse thread", "description": "Phosphate screws for gypsum"},
    {"id": "p12", "title": "LED light bulb 60 watt equivalent 4 pack", "description": "Soft white A19 bulbs"},
    {"id": "p13", "title": "Smart LED bulb color changing", "description": "Wi-Fi light, works with voice assistants"},
    {"id": "p14", "title": "Ceiling fan with light kit 52 in", "description": "Five blades, remote control"},
    {"id": "p15", "title": "Cordless leaf blower 40V", "description": "Battery powered yard blower"},
    {"id": "p16", "title": "Wet dry shop vacuum 6 gallon", "description": "Vacuum for garage and workshop"},
]  # fmt: skip
QUERIES = {
    "q1": "cordless drill",
    "q2": "red paint for walls",
    "q3": "garden hose",
    "q4": "wood screws",
    "q5": "led light bulb",
    "q6": "battery powered tools",
    "q7": "something nobody judged",
}
QRELS = {
    "q1": {"p01": 3, "p02": 3, "p03": 2, "p04": 1.67, "p15": 1},
    "q2": {"p05": 3, "p07": 2, "p06": 1.67, "p01": 1},
    "q3": {"p08": 3, "p09": 2.33, "p16": 1},
    "q4": {"p10": 3, "p11": 2.33, "p04": 1},
    "q5": {"p12": 3, "p13": 2.67, "p14": 2},
    "q6": {"p01": 2, "p02": 2, "p15": 2, "p16": 1},  # nothing reaches 2.33: left out of Recall and MRR
}


@dataclass
class Catalogue:
    index: str
    engine: SearchEngine
    settings: Settings
    fixed: SearchService
    tuned: SearchService
    queries: Path
    qrels: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("eval")
    queries = folder / "queries.tsv"
    queries.write_text("".join(f"{qid}\t{text}\n" for qid, text in QUERIES.items()), encoding="utf-8")
    qrels = folder / "qrels.tsv"
    qrels.write_text(
        "".join(f"{qid}\t{doc}\t{grade}\n" for qid, judged in QRELS.items() for doc, grade in judged.items())
    )
    return queries, qrels


@pytest.fixture(scope="module")
def catalogue(engine: SearchEngine, settings: Settings, files: tuple[Path, Path]) -> Iterator[Catalogue]:
    encoders = search_encoders(settings)
    text_only = {"text": encoders["text"]}
    alias = f"test-eval-{uuid.uuid4().hex[:10]}"
    engine.create_index(alias, definition_from_settings(settings, encoder_records(settings, text_only)))
    try:
        report = Ingestor(settings, engine, text_only).ingest(PRODUCTS, index=alias, refresh=True)
        assert report.failed == [] and len(report.indexed) == len(PRODUCTS)
        engine.refresh(alias)
        yield Catalogue(
            alias,
            engine,
            settings,
            SearchService(settings, engine, encoders, use_tuned=False),
            SearchService(settings, engine, encoders),
            *files,
        )
    finally:
        for name in engine.versions(alias).values():
            engine.delete_index(name)


def eval_queries(c: Catalogue) -> tuple[list[EvalQuery], Any]:
    judged = judgments(read_qrels(c.qrels), grade_offset=1, relevant_grade=2.33)
    kept, missing = judged_queries(read_queries(c.queries), judged)
    assert missing == ["q7"]
    return kept, judged


def test_offline_fusion_is_exactly_the_live_search(catalogue: Catalogue) -> None:
    queries, _ = eval_queries(catalogue)
    windows = [10, 16]  # 10 cuts the kNN lists short; 16 holds the whole catalogue
    configs = grid(["bm25", "text_knn"], rank_constants=[1, 60], windows=windows, steps=4)
    assert len(configs) == (4 + 2) * 5 * 2
    candidates = fetch_candidates(catalogue.fixed, catalogue.index, queries, ["bm25", "text_knn"], windows)
    assert len(candidates[10]["q1"]["text_knn"]) == 10 and len(candidates[16]["q1"]["text_knn"]) == 16
    assert 0 < len(candidates[16]["q1"]["bm25"]) < 16  # BM25 matches only some products
    compared = 0
    for config in configs:
        for query in queries:
            lists = candidates[config.rank_window][query.qid]
            size = min(10, config.rank_window)
            request = SearchQuery(
                text=query.text, size=size, facets=False, **config.query_params(present=lists)
            )
            live = catalogue.fixed.search(request, index=catalogue.index)
            assert [(h.id, h.score) for h in live.hits] == fuse_offline(lists, config, size), config.label()
            compared += 1
    assert compared == len(configs) * 6
    # the check `hybrid-search tune --verify` runs
    checked = verify_live(catalogue.fixed, catalogue.index, queries, candidates, configs, 15, seed=2)
    assert checked == 15


def test_tuned_configuration_is_the_index_default(catalogue: Catalogue) -> None:
    c, s = catalogue, catalogue.settings
    text = SearchQuery(text="cordless drill", facets=False)
    before = c.tuned.search(text, index=c.index)
    assert before.fusion["method"] == s.fusion_method and before.fusion["rank_window"] == s.fusion_rank_window
    saved = {"fusion": "rrf", "rank_constant": 7, "rank_window": 12, "weights": {"bm25": 0.8, "text_knn": 0.2},
             "tuning": {"metric": "ndcg@10"}}  # fmt: skip
    c.engine.set_tuned_config(c.index, saved)
    try:
        assert c.tuned.tuned(c.index) == {
            k: saved[k] for k in ("fusion", "rank_constant", "rank_window", "weights")
        }
        after = c.tuned.search(text, index=c.index)
        assert after.fusion == {"method": "rrf", "normaliser": None, "rank_constant": 7, "rank_window": 12,
                                "weights": {"bm25": 0.8, "text_knn": 0.2}}  # fmt: skip
        explicit = SearchQuery(text="cordless drill", facets=False, fusion="rrf", rank_constant=7, rank_window=12,
                               weights={"bm25": 0.8, "text_knn": 0.2})  # fmt: skip
        assert [(h.id, h.score) for h in after.hits] == [
            (h.id, h.score) for h in c.fixed.search(explicit, index=c.index).hits
        ]
        # `tuned` in eval is exactly that
        assert parse_method("tuned").query_params() == {}
        # what a query says still wins; the rest still comes from the tuned configuration
        mixed = c.tuned.search(
            SearchQuery(text="cordless drill", fusion="linear", facets=False), index=c.index
        )
        assert mixed.fusion["method"] == "linear" and mixed.fusion["normaliser"] == s.fusion_normaliser
        assert mixed.fusion["rank_window"] == 12 and mixed.fusion["weights"] == {"bm25": 0.8, "text_knn": 0.2}
        # a service that ignores tuning (the fixed eval methods) sees the settings
        assert c.fixed.search(text, index=c.index).fusion == before.fusion
        # a broken saved configuration is a clear error naming the index
        c.engine.set_tuned_config(c.index, {"fusion": "magic"})
        with pytest.raises(
            ConfigurationError, match=f"tuned configuration saved in {c.index}'s _meta is invalid"
        ):
            c.tuned.search(text, index=c.index)
    finally:
        c.engine.set_tuned_config(c.index, None)
    assert c.tuned.search(text, index=c.index).fusion == before.fusion


def test_evaluate_scores_exactly_what_the_search_returns(catalogue: Catalogue) -> None:
    c = catalogue
    queries, judged = eval_queries(c)
    methods = parse_methods("bm25 text-knn linear:minmax:0.5 rrf:60 native bm25@5")
    report = evaluate(c.fixed, c.tuned, c.index, queries, judged, methods, samples=500)
    assert report["queries"] == 6 and report["queries_with_relevant"] == 5 and report["baseline"] == "bm25"
    rows = report["methods"]
    assert list(rows) == [m.name for m in methods]
    assert rows["bm25"]["page_size"] == 100 and rows["bm25@5"]["page_size"] == 5
    for name, row in rows.items():
        assert row["p50_ms"] > 0
        assert 0.0 <= row["ndcg@10"] <= row["condensed_ndcg@10"] <= 1.0
        assert ("vs_baseline" in row) == (name != "bm25")
    # recompute bm25's figures from the live rankings
    bm25 = parse_method("bm25").query_params()
    rankings = {
        q.qid: [h.id for h in c.fixed.search(SearchQuery(text=q.text, size=100, facets=False, **bm25), index=c.index).hits]
        for q in queries
    }  # fmt: skip
    assert rows["bm25"]["ndcg@10"] == pytest.approx(
        sum(ndcg_at_k(rankings[q], judged.gains[q]) for q in rankings) / 6
    )
    assert rows["bm25"]["condensed_ndcg@10"] == pytest.approx(
        sum(condensed_ndcg_at_k(rankings[q], judged.gains[q]) for q in rankings) / 6
    )
    # the window-5 page holds the first 5 of the same ranking, so nDCG@10 can only be lower or equal
    assert rows["bm25@5"]["ndcg@10"] <= rows["bm25"]["ndcg@10"]
    # the whole catalogue is in text kNN's top 100, so every relevant product is recalled
    assert rows["text-knn"]["recall@100"] == 1.0
    assert (
        rows["text-knn"]["vs_baseline"]["ndcg@10"]["low"]
        <= rows["text-knn"]["vs_baseline"]["ndcg@10"]["diff"]
    )
    with pytest.raises(ValidationError, match="has no tuned configuration"):
        evaluate(c.fixed, c.tuned, c.index, queries, judged, parse_methods("bm25 tuned"))


# ---- the CLI ----------------------------------------------------------------------------------------------


def cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from hybrid_search import cli as module

    return CliRunner().invoke(module.app, list(args))


def test_cli_eval_tune_and_untune(catalogue: Catalogue, tmp_path: Path) -> None:
    c = catalogue
    if c.engine.kind != "opensearch":
        pytest.skip("the CLI reads the engine from the settings (OpenSearch here)")
    common = ["--queries", str(c.queries), "--qrels", str(c.qrels), "--grade-offset", "1",
              "--relevant-grade", "2.33", "--index", c.index]  # fmt: skip
    first = tmp_path / "eval.json"
    plot = tmp_path / "methods.png"
    result = cli("eval", *common, "--methods", "bm25 text-knn native linear:dbsf rrf:60",
                 "--json", str(first), "--plot", str(plot), "--bootstrap", "300")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.stdout and "difference from bm25" in result.stdout
    data = json.loads(first.read_text())
    assert data["queries"] == 6
    assert set(data["methods"]) == {"bm25", "text-knn", "native", "linear:dbsf", "rrf:60"}
    for row in data["methods"].values():
        assert {
            "ndcg@10",
            "condensed_ndcg@10",
            "recall@1",
            "recall@10",
            "recall@100",
            "mrr@10",
            "p50_ms",
        } <= set(row)
    assert plot.read_bytes()[:4] == b"\x89PNG"

    tuned_json = tmp_path / "tune.json"
    result = cli("tune", *common, "--folds", "2", "--windows", "10,16", "--steps", "4", "--rank-constants",
                 "10,60", "--verify", "10", "--bootstrap", "300", "--json", str(tuned_json))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held-out" in result.stdout and "fit: in-sample" in result.stdout
    report = json.loads(tuned_json.read_text())
    assert report["verified_live"] == 10 and report["configurations"] == (4 + 2) * 5 * 2
    assert len(report["folds"]["all"]) == 2 and {"linear", "rrf", "all"} == set(report["folds"])
    assert set(report["held_out"]) == {"bm25 alone", "text_knn alone", "tuned linear (CV)", "tuned rrf (CV)",
                                       "tuned (CV)"}  # fmt: skip
    best = report["best"]
    with create_engine(c.settings) as fresh:  # c.engine caches _meta for 30 s; the CLI wrote it elsewhere
        saved = fresh.tuned_config(c.index)
    assert saved is not None and {k: saved[k] for k in best["config"]} == best["config"]
    assert saved["tuning"]["queries"] == 6 and saved["tuning"]["folds"] == 2

    # `tuned` is the saved configuration: the same figures as its label spelled out as a method
    second = tmp_path / "eval2.json"
    result = cli("eval", *common, "--methods", f"bm25 tuned {best['label']}", "--json", str(second),
                 "--bootstrap", "300")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fitted on these very queries" in result.output
    rows = json.loads(second.read_text())["methods"]
    for metric in ("ndcg@10", "condensed_ndcg@10", "recall@100", "mrr@10"):
        assert rows["tuned"][metric] == rows[best["label"]][metric]
    assert rows["tuned"]["ndcg@10"] == pytest.approx(best["fit_mean"])

    result = cli("untune", "--index", c.index)
    assert result.exit_code == 0, result.output
    with create_engine(c.settings) as fresh:
        assert fresh.tuned_config(c.index) is None


def test_cli_errors_are_one_clear_line(catalogue: Catalogue, tmp_path: Path) -> None:
    import subprocess
    import sys

    c = catalogue
    if c.engine.kind != "opensearch":
        pytest.skip("the CLI reads the engine from the settings (OpenSearch here)")
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\tp01\t3\nq1\tp02\tgreat\n")
    base = [
        sys.executable,
        "-m",
        "hybrid_search.cli",
        "eval",
        "--queries",
        str(c.queries),
        "--index",
        c.index,
    ]
    runs = {
        "grade 'great' is not a number": [*base, "--qrels", str(bad)],
        "unknown method 'bm99'": [*base, "--qrels", str(c.qrels), "--methods", "bm99"],
        "has no tuned configuration": [*base, "--qrels", str(c.qrels), "--methods", "tuned", "--grade-offset", "1"],
        "is negative; set --grade-offset": [*base, "--qrels", str(c.qrels), "--grade-offset", "2"],
    }  # fmt: skip
    for message, command in runs.items():
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, (message, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert f"{bad}:2:" in subprocess.run(runs["grade 'great' is not a number"], capture_output=True, text=True,
                                         timeout=300).stderr  # fmt: skip


def test_query_adaptive_fusion_weights_each_query(catalogue: Catalogue, tmp_path: Path) -> None:
    from hybrid_search.evaluation.adaptive_tuning import fit_with_cv
    from hybrid_search.ranking.adaptive import FEATURES, AdaptiveFusion

    c = catalogue
    queries, judged = eval_queries(c)
    candidates = fetch_candidates(c.fixed, c.index, queries, ["bm25", "text_knn"], [16])[16]
    model, report = fit_with_cv(queries, candidates, judged, folds=2, alpha=1.0)
    assert report["queries"] == 6 and set(report["held_out_ndcg@10"]) == {
        "global share (CV)",
        "adaptive (CV)",
    }
    assert model.grid == tuple(round(0.1 * i, 1) for i in range(11))

    # a planted model: three words or more -> BM25 alone (share 0), fewer -> text kNN alone (share 1)
    zeros = (0.0,) * len(FEATURES)
    planted = AdaptiveFusion(grid=(0.0, 1.0), mean=zeros, scale=(1.0,) * len(FEATURES),
                             coef=((-2.5, 1.0, *zeros[1:]), (0.0, *zeros)), alpha=0.0)  # fmt: skip
    c.engine.set_tuned_config(c.index, {"fusion": "linear", "normaliser": "minmax", "rank_window": 16,
                                        "weights": {"bm25": 0.5, "text_knn": 0.5}, "adaptive": planted.to_dict()})  # fmt: skip
    try:
        for text, expected in (("red paint for walls", {"bm25": 1.0, "text_knn": 0.0}),
                               ("garden hose", {"bm25": 0.0, "text_knn": 1.0})):  # fmt: skip
            live = c.tuned.search(SearchQuery(text=text, size=10, facets=False), index=c.index)
            assert live.fusion["adaptive"] is True and live.fusion["weights"] == expected
            alone = {name: 1.0 for name, w in expected.items() if w > 0}
            other = {name: 0.0 for name, w in expected.items() if w == 0}
            fixed = c.fixed.search(SearchQuery(text=text, size=10, facets=False, rank_window=16, fusion="linear",
                                               normaliser="minmax", weights={**alone, **other}), index=c.index)  # fmt: skip
            assert [h.id for h in live.hits] == [h.id for h in fixed.hits]
        # weights given by the query win over the model
        asked = c.tuned.search(
            SearchQuery(text="garden hose", size=10, facets=False, weights={"bm25": 1.0, "text_knn": 1.0}),
            index=c.index,
        )
        assert "adaptive" not in asked.fusion and asked.fusion["weights"]["bm25"] == 1.0
    finally:
        c.engine.set_tuned_config(c.index, None)

    if c.engine.kind != "opensearch":
        return  # the CLI reads the engine from the settings (OpenSearch here)
    out = tmp_path / "adaptive.json"
    result = cli("tune", "--queries", str(c.queries), "--qrels", str(c.qrels), "--grade-offset", "1",
                 "--relevant-grade", "2.33", "--index", c.index, "--folds", "2", "--windows", "16", "--steps", "2",
                 "--fusions", "linear", "--normalisers", "minmax", "--adaptive", "--verify", "2",
                 "--bootstrap", "200", "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "query-adaptive fusion, held out (2 folds)" in result.stdout
    assert json.loads(out.read_text())["adaptive"]["queries"] == 6
    with create_engine(c.settings) as fresh:
        saved = fresh.tuned_config(c.index)
        assert saved is not None and saved["fusion"] == "linear" and saved["normaliser"] == "minmax"
        assert AdaptiveFusion.from_dict(saved["adaptive"]).grid == model.grid
        fresh.set_tuned_config(c.index, None)


def test_learned_fusion_ranks_every_candidate_with_its_title(catalogue: Catalogue, tmp_path: Path) -> None:
    import math

    from hybrid_search.evaluation.learned_tuning import fit_with_cv
    from hybrid_search.ranking.learned import FEATURES, LearnedFusion, candidate_features

    c = catalogue
    queries, judged = eval_queries(c)
    titles = {str(p["id"]): str(p["title"]) for p in PRODUCTS}
    candidates = fetch_candidates(c.fixed, c.index, queries, ["bm25", "text_knn"], [16])[16]
    model, report = fit_with_cv(queries, candidates, titles, judged, folds=2, rank_window=16)
    assert report["queries"] == 6 and set(report["held_out_ndcg@10"]) == {
        "bm25 alone",
        "global share (CV)",
        "learned (CV)",
    }
    assert model.rank_window == 16 and set(report["coefficients"]) == set(FEATURES)

    # a planted model that ranks by the share of the query's words in the title, then by BM25's min-max score
    coef = [0.0] * len(FEATURES)
    coef[FEATURES.index("title_word_coverage")] = 1.0
    coef[FEATURES.index("lexical_minmax")] = 0.01
    planted = LearnedFusion(mean=(0.0,) * len(FEATURES), scale=(1.0,) * len(FEATURES), coef=tuple(coef))
    text = "red paint for walls"
    request = SearchQuery(text=text, size=10, facets=False, fusion="learned", rank_window=16, explain=True)
    with pytest.raises(ValidationError, match="no learned fusion model"):
        c.fixed.search(request, index=c.index)
    c.engine.set_tuned_config(c.index, {"fusion": "learned", "normaliser": "minmax", "rank_window": 16,
                                        "weights": {"bm25": 0.5, "text_knn": 0.5}, "learned": planted.to_dict()})  # fmt: skip
    try:
        live = c.fixed.search(request, index=c.index)  # asked for by the query: use_tuned=False still uses it
        ids, features = candidate_features(text, candidates["q2"], titles)
        expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: -planted.scores(features)[i])][:10]
        assert [h.id for h in live.hits] == expected
        assert live.hits[0].id == "p05"  # "Interior wall paint red satin": red, paint, wall(s)
        assert live.fusion["method"] == "learned" and live.fusion["learned"] is True
        for hit in live.hits:
            assert hit.explain is not None and set(hit.explain) == {"bm25", "text_knn", "title_match"}
            assert math.isclose(hit.score, math.fsum(part["weighted"] for part in hit.explain.values()))
        # the index default: a query that says nothing gets the learned ranking
        default = c.tuned.search(SearchQuery(text=text, size=10, facets=False), index=c.index)
        assert [h.id for h in default.hits] == expected
        # an explicit other fusion still wins
        other = c.tuned.search(SearchQuery(text=text, size=10, facets=False, fusion="rrf"), index=c.index)
        assert other.fusion["method"] == "rrf" and "learned" not in other.fusion
    finally:
        c.engine.set_tuned_config(c.index, None)

    if c.engine.kind != "opensearch":
        return  # the CLI reads the engine from the settings (OpenSearch here)
    out = tmp_path / "learned.json"
    result = cli("tune", "--queries", str(c.queries), "--qrels", str(c.qrels), "--grade-offset", "1",
                 "--relevant-grade", "2.33", "--index", c.index, "--folds", "2", "--windows", "16", "--steps", "2",
                 "--fusions", "linear", "--normalisers", "minmax", "--learned", "--verify", "2",
                 "--bootstrap", "200", "--json", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "learned fusion, held out (2 folds)" in result.stdout
    assert json.loads(out.read_text())["learned"]["queries"] == 6
    with create_engine(c.settings) as fresh:
        saved = fresh.tuned_config(c.index)
        assert saved is not None and saved["fusion"] == "learned"
        assert LearnedFusion.from_dict(saved["learned"]).rank_window == 16
        evaluated = cli("eval", "--queries", str(c.queries), "--qrels", str(c.qrels), "--grade-offset", "1",
                        "--relevant-grade", "2.33", "--index", c.index, "--methods", "bm25 learned tuned")  # fmt: skip
        assert evaluated.exit_code == 0, evaluated.output
        assert "learned" in evaluated.stdout
        fresh.set_tuned_config(c.index, None)
