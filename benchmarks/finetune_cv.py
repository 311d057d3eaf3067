"""Cross-validation of text-encoder fine-tuning on the Home Depot judgments (a script, not a test).

    python benchmarks/finetune_cv.py [--folds 5] [--train-folds 0,1] [--json FILE]

Stage 1, per fold (5 by query id): the encoder is fine-tuned (``hybrid_search.evaluation.finetune``) on the other folds'
queries only, the whole catalogue (54,667 titles) is embedded with it, and the fold's held-out queries get their
dense lists by exact search over those embeddings (numpy; the engine's HNSW gives the same lists within noise).
These out-of-fold lists are cached under ``.cache/finetune-cv`` (gitignored), so folds can be trained in several
runs (``--train-folds``) and a rerun only scores. BM25 lists come from the live engine (``--index``, default
``bench-homedepot``: every title, see benchmarks/query.py); zero-shot dense lists from the vectors that index holds.

Stage 2: bm25, dense, linear min-max 0.5, RRF k=60, the best global weight, query-adaptive fusion
(``hybrid_search.ranking.adaptive``) and learned fusion (``hybrid_search.ranking.learned``: BM25 + dense + title features), with
the fusion settings fitted on an inner 5-fold split and scored on its held-out part only, for the zero-shot encoder (all queries, and the queries the fine-tuned folds cover) and the fine-tuned one (out
of fold). Metrics: ``hybrid_search.evaluation.metrics`` (gain = grade - 1, relevant = grade >= 2.33), with
paired-bootstrap 95% intervals of nDCG@10 minus BM25's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hybrid_search.catalog import (  # noqa: E402
    Product,
    open_catalogue,
    product_text,
)
from hybrid_search.encoders import get_encoder  # noqa: E402
from hybrid_search.evaluation.data import read_qrels, read_queries  # noqa: E402
from hybrid_search.evaluation.finetune import train, training_pairs  # noqa: E402
from hybrid_search.evaluation.metrics import (  # noqa: E402
    condensed_ndcg_at_k,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    recall_at_k,
)
from hybrid_search.ingest.workers import WORKER_ENV  # noqa: E402
from hybrid_search.ranking.adaptive import fit_adaptive, query_features  # noqa: E402
from hybrid_search.ranking.fusion import Hit, linear_fusion, rrf_fusion  # noqa: E402
from hybrid_search.ranking.learned import candidate_features, fit_learned  # noqa: E402

CACHE = REPO / ".cache" / "finetune-cv"
GRADE_OFFSET, RELEVANT = 1.0, 2.33
GRID = tuple(round(0.1 * i, 1) for i in range(11))  # the dense retriever's share in linear fusion
ALPHA = 30.0


def fold_of(qid: str, folds: int) -> int:
    return int(hashlib.sha256(qid.encode()).hexdigest(), 16) % folds


def _save_lists(path: Path, lists: Mapping[str, Sequence[Hit]]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({q: [[h.doc_id, h.score] for h in hits] for q, hits in lists.items()}))


def _load_lists(path: Path) -> dict[str, list[Hit]]:
    return {q: [Hit(d, s) for d, s in hits] for q, hits in json.loads(path.read_text()).items()}


def bm25_lists(index: str, queries: Mapping[str, str], depth: int) -> dict[str, list[Hit]]:
    """BM25's top ``depth`` (id, raw score) per query from the live engine, through the query layer."""
    path = CACHE / f"bm25-{index}-{depth}.json"
    if path.exists():
        return _load_lists(path)
    from hybrid_search.engine import create_engine
    from hybrid_search.search import SearchQuery, SearchService
    from hybrid_search.settings import load_settings

    settings = load_settings()
    engine = create_engine(settings)
    service = SearchService(settings, engine, {}, use_tuned=False)
    out: dict[str, list[Hit]] = {}
    for n, (qid, text) in enumerate(sorted(queries.items()), 1):
        query = SearchQuery(text=text, size=100, rank_window=depth, facets=False, explain=True,
                            weights={"bm25": 1.0, "text_knn": 0.0}, fusion="linear")  # fmt: skip
        response = service.search(query, index=index)
        out[qid] = [Hit(h.id, float(h.explain["bm25"]["raw_score"])) for h in response.hits]  # type: ignore[index]
        if n % 500 == 0:
            print(f"  bm25 {n}/{len(queries)}", flush=True)
    engine.close()
    _save_lists(path, out)
    return out


def stored_vectors(index: str, ids: Sequence[str]) -> np.ndarray:
    """The zero-shot text vectors the index already holds (MiniLM, written at ingestion), in ``ids`` order."""
    path = CACHE / f"catalogue-{index}.npy"
    if path.exists():
        return np.load(path)
    from hybrid_search.engine import create_engine
    from hybrid_search.settings import load_settings

    engine = create_engine(load_settings())
    rows = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found = engine.get_fields(index, chunk, ["text_vector"])
        rows.extend(found[i]["text_vector"] for i in chunk)
    engine.close()
    matrix = np.asarray(rows, dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, matrix)
    return matrix


def embed_catalogue(spec: str, texts: Sequence[str]) -> np.ndarray:
    encoder = get_encoder(spec, batch_size=256)
    started = time.perf_counter()
    vectors = np.asarray(encoder.embed_documents(list(texts)), dtype=np.float32)
    print(f"  embedded {len(texts)} titles in {time.perf_counter() - started:.0f} s", flush=True)
    return vectors


def dense_lists(
    spec: str, matrix: np.ndarray, ids: Sequence[str], queries: Mapping[str, str], depth: int
) -> dict[str, list[Hit]]:
    """Exact top-``depth`` cosine neighbours of each query over the whole catalogue."""
    encoder = get_encoder(spec)
    qids = sorted(queries)
    vectors = np.asarray(encoder.embed_documents([queries[q] for q in qids]), dtype=np.float32)
    out = {}
    for start in range(0, len(qids), 256):
        scores = vectors[start : start + 256] @ matrix.T
        for row, qid in enumerate(qids[start : start + 256]):
            top = np.argpartition(-scores[row], depth)[:depth]
            top = top[np.argsort(-scores[row][top], kind="stable")]
            out[qid] = [Hit(ids[i], float(scores[row][i])) for i in top]
    return out


def metrics(ranking: Sequence[str], grades: Mapping[str, float]) -> dict[str, float]:
    gains = {d: max(0.0, g - GRADE_OFFSET) for d, g in grades.items()}
    relevant = {d for d, g in grades.items() if g >= RELEVANT}
    return {
        "ndcg@10": ndcg_at_k(ranking, gains, 10),
        "condensed_ndcg@10": condensed_ndcg_at_k(ranking, gains, 10),
        "recall@100": recall_at_k(ranking, relevant, 100) if relevant else float("nan"),
        "mrr@10": mrr_at_k(ranking, relevant, 10) if relevant else float("nan"),
    }


def fused(bm25: Sequence[Hit], dense: Sequence[Hit], share: float) -> list[str]:
    lists = {"bm25": bm25, "text_knn": dense}
    weights = {"bm25": 1.0 - share, "text_knn": share}
    return [h.doc_id for h in linear_fusion(lists, weights, normaliser="minmax", limit=100)]


def grid_gains(
    qids: Sequence[str], bm25: Mapping[str, Sequence[Hit]], dense: Mapping[str, Sequence[Hit]],
    grades: Mapping[str, Mapping[str, float]],
) -> np.ndarray:  # fmt: skip
    """nDCG@10 of every query fused at every grid share (rows: queries, columns: GRID)."""
    return np.asarray(
        [[metrics(fused(bm25[q], dense[q], w), grades[q])["ndcg@10"] for w in GRID] for q in qids]
    )


def candidate_groups(
    qids: Sequence[str], bm25: Mapping[str, Sequence[Hit]], dense: Mapping[str, Sequence[Hit]],
    queries: Mapping[str, str], grades: Mapping[str, Mapping[str, float]], titles: Mapping[str, str],
) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:  # fmt: skip
    """Learned fusion's candidates, features and gains (unjudged = 0) per query (``dense`` empty: BM25 only)."""
    out = {}
    for q in qids:
        lists = {"bm25": bm25[q], "text_knn": dense[q]} if dense else {"bm25": bm25[q]}
        ids, x = candidate_features(queries[q], lists, titles)
        gains = np.asarray([max(0.0, grades[q].get(d, GRADE_OFFSET) - GRADE_OFFSET) for d in ids])
        out[q] = (ids, x, gains)
    return out


def evaluate_fold(
    test: Sequence[str], train: Sequence[str], bm25: Mapping[str, Sequence[Hit]],
    dense: Mapping[str, Sequence[Hit]], queries: Mapping[str, str], grades: Mapping[str, Mapping[str, float]],
    table: np.ndarray, row_of: Mapping[str, int], groups: Mapping[str, tuple[list[str], np.ndarray, np.ndarray]],
    lexical_groups: Mapping[str, tuple[list[str], np.ndarray, np.ndarray]],
) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """Every method on the ``test`` queries; fusion settings fitted on the ``train`` queries only."""
    train_rows = [row_of[q] for q in train]
    best = GRID[int(np.argmax(table[train_rows].mean(axis=0)))]
    features = [query_features(queries[q], bm25[q], dense[q]) for q in train]
    model = fit_adaptive(features, table[train_rows], GRID, alpha=ALPHA)
    ranker = fit_learned([(groups[q][1], groups[q][2]) for q in train])
    lexical_ranker = fit_learned([(lexical_groups[q][1], lexical_groups[q][2]) for q in train])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for q in test:
        share = model.predict(query_features(queries[q], bm25[q], dense[q]))
        ids, x, _ = groups[q]
        learned = [ids[i] for i in np.argsort(-ranker.scores(x), kind="stable")[:100]]
        lids, lx, _ = lexical_groups[q]
        lexical_only = [lids[i] for i in np.argsort(-lexical_ranker.scores(lx), kind="stable")[:100]]
        rankings = {
            "bm25": [h.doc_id for h in bm25[q]],
            "dense": [h.doc_id for h in dense[q]],
            "linear:minmax:0.5": fused(bm25[q], dense[q], 0.5),
            "rrf:60": [
                h.doc_id
                for h in rrf_fusion({"bm25": bm25[q], "text_knn": dense[q]}, rank_constant=60, limit=100)
            ],
            "linear:minmax:tuned": fused(bm25[q], dense[q], best),
            "adaptive": fused(bm25[q], dense[q], share),
            "learned": learned,
            "learned, bm25 + title only": lexical_only,
        }
        for method, ranking in rankings.items():
            out.setdefault(method, {})[q] = metrics(ranking, grades[q])
    return out


def summarise(per_query: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """``per_query[method][qid][metric]`` -> means, and paired-bootstrap CIs of nDCG@10 minus BM25."""
    out: dict[str, Any] = {}
    qids = sorted(per_query["bm25"])
    for method, rows in per_query.items():
        means: dict[str, Any] = {}
        for metric in ("ndcg@10", "condensed_ndcg@10", "recall@100", "mrr@10"):
            values = [rows[q][metric] for q in qids if not np.isnan(rows[q][metric])]
            means[metric] = round(float(np.mean(values)), 4)
        diff, low, high = paired_bootstrap(
            [rows[q]["ndcg@10"] for q in qids], [per_query["bm25"][q]["ndcg@10"] for q in qids]
        )
        means["ndcg@10_minus_bm25"] = [round(diff, 4), round(low, 4), round(high, 4)]
        out[method] = means
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--index", default="bench-homedepot")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--per-query", type=int, default=3, help="training pairs kept per query")
    parser.add_argument("--freeze-layers", type=int, default=3, help="lower layers kept fixed")
    parser.add_argument("--tag", default="v1", help="names the cached fold results (change it to retrain)")
    parser.add_argument(
        "--train-folds", default=None, help="comma-separated folds to train now (default: all; '' = none)"
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in WORKER_ENV.items()):
        os.execvpe(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_ENV})

    hd = args.datasets / "homedepot"
    queries = {q.qid: q.text or "" for q in read_queries(hd / "queries_dev.tsv")}
    grades = read_qrels(hd / "qrels_dev.tsv")
    queries = {q: t for q, t in queries.items() if q in grades and t}
    products = [p for p in open_catalogue(hd / "products.csv").records() if isinstance(p, Product)]
    ids = [p.id for p in products]
    texts = {p.id: product_text(p.document()) for p in products}
    print(f"{len(queries)} queries, {len(ids)} products", flush=True)

    bm25 = bm25_lists(args.index, queries, args.depth)
    zero_dense = dense_lists("minilm", stored_vectors(args.index, ids), ids, queries, args.depth)
    qids = sorted(queries)
    fold = {q: fold_of(q, args.folds) for q in qids}

    # stage 1: per fold, fine-tune on the other folds' queries; keep the held-out queries' dense lists
    oof: dict[str, list[Hit]] = {}
    training: list[dict[str, Any]] = []
    to_train = (
        range(args.folds) if args.train_folds is None else [int(k) for k in args.train_folds.split(",") if k]
    )
    for k in range(args.folds):
        path = CACHE / f"oof-fold{k}-of{args.folds}-{args.tag}.json"
        if path.exists():
            oof.update(_load_lists(path))
            record = CACHE / f"training-fold{k}-{args.tag}.json"
            if record.exists():
                training.append(json.loads(record.read_text()))
            continue
        if k not in to_train:
            continue
        seen = {q: queries[q] for q in qids if fold[q] != k}
        held = {q: queries[q] for q in qids if fold[q] == k}
        pairs = training_pairs(seen, {q: grades[q] for q in seen}, texts, relevant_grade=RELEVANT,
                               negative_grade=2.0, mined={q: [h.doc_id for h in bm25[q][:10]] for q in seen},
                               per_query=args.per_query)  # fmt: skip
        print(f"fold {k}: {len(seen)} training queries, {len(pairs)} pairs, {len(held)} held out", flush=True)
        report = train(pairs, base="minilm", out_dir=CACHE / "models", epochs=args.epochs,
                       batch_size=args.batch_size, learning_rate=args.learning_rate, max_length=args.max_length,
                       freeze_layers=args.freeze_layers, name=f"minilm-fold{k}")  # fmt: skip
        print(f"  trained: {report.summary()}", flush=True)
        training.append({"fold": k, **report.summary()})
        spec = f"hf-text:{report.folder}"
        lists = dense_lists(spec, embed_catalogue(spec, [texts[i] for i in ids]), ids, held, args.depth)
        _save_lists(path, lists)
        (CACHE / f"training-fold{k}-{args.tag}.json").write_text(json.dumps(training[-1]))
        oof.update(lists)

    # stage 2: fusion settings (a global weight, the adaptive model) are fitted by an inner 5-fold split of the
    # queries scored here and evaluated on the inner held-out part. For the fine-tuned encoder only queries whose
    # dense lists come from a model that never saw them (out of fold) take part, and the zero-shot encoder is
    # scored on the same queries, and on all of them.
    report_out: dict[str, Any] = {"queries": len(qids), "folds": args.folds, "training": training}
    scored = sorted(oof)
    cases = [("zero-shot (all queries)", zero_dense, qids)]
    if scored:
        cases += [
            ("zero-shot (fine-tuned's queries)", zero_dense, scored),
            ("fine-tuned (out of fold)", oof, scored),
        ]
    for name, dense, subset in cases:
        table = grid_gains(subset, bm25, dense, grades)
        groups = candidate_groups(subset, bm25, dense, queries, grades, texts)
        lexical_groups = candidate_groups(subset, bm25, {}, queries, grades, texts)
        row_of = {q: n for n, q in enumerate(subset)}
        inner = {q: fold_of("inner:" + q, 5) for q in subset}
        per_query: dict[str, dict[str, dict[str, float]]] = {}
        for k in range(5):
            test = [q for q in subset if inner[q] == k]
            train_q = [q for q in subset if inner[q] != k]
            for method, rows in evaluate_fold(
                test, train_q, bm25, dense, queries, grades, table, row_of, groups, lexical_groups
            ).items():
                per_query.setdefault(method, {}).update(rows)
        report_out[name] = {"queries": len(subset), **summarise(per_query)}
        print(name, json.dumps(report_out[name], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report_out, indent=2) + "\n")


if __name__ == "__main__":
    main()
