"""Photo search quality offline: Luma "same item from another view" and Myntra "same kind", exact numpy search.

    python benchmarks/photos.py                  # the table of methods x (Luma R@1, R@10, Myntra P@10)
    python benchmarks/photos.py --json out.json  # the same figures as JSON

Protocols (``hybrid_search.evaluation.photos``): Luma queries are the alt1 and back photos (243); the query photo is
left out, its product stays findable through its other photos and a product scores the best of its photos.
Myntra: each of the 2,000 photos queries the others; relevant = same article type (Precision@10).

Every photo is embedded once per encoder with the product's own encoders (EfficientNet-Lite0 pooled features,
``colour`` = HSV 8x8x8 cosine, ``colour-hellinger`` = HSV 16x8x8 square-rooted) and cached in ``--cache``
(default ``<repo>/.cache/photos``, git-ignored; the file name holds the encoder's name and weights version and
a hash of the photo list), so reruns only search. The script re-executes itself once with the worker's glibc
allocator variables (``hybrid_search.ingest.workers.WORKER_ENV``): batched CNN inference on CPU is 2-3x faster with them.

Methods: each retriever alone; ``concat`` = the equal-weight concatenation of two L2-normalised vectors (the
mean of their cosines); ``linear minmax`` = the query layer's default client-side fusion of the two retrievers'
top-100 product lists (``hybrid_search.ranking.fusion``); ``cosine sum`` and ``kind-aware`` =
``hybrid_search.ranking.photo_fusion`` (the query layer's photo fusion) without and with its kind term, fed the
engine-like lists: per retriever, products scored by their best photo as ``(1 + cos) / 2``, top 100. The last rows
repeat the kind-aware method on Luma indexed two other ways: without *any* query photo (what the engine evaluation
indexes, ``hybrid_search.evaluation.photos.catalogue_records(without=...)``) and with each product's main photo
only.

``--through-engine opensearch=http://127.0.0.1:9200`` (repeatable) runs the product end to end on that engine:
each set is indexed by the ingestion pipeline (every photo a nested vector; Luma without its query photos) and
every query photo goes through ``SearchService`` with the settings' defaults
(``hybrid_search.evaluation.photos.engine_rankings``). The encoders there are the real ones behind a memory
filled from the cache above, so nothing is embedded twice; the index is deleted afterwards.
Data: --datasets (default $HYBRID_SEARCH_DATASETS or <repo>/../shared/datasets).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hybrid_search.evaluation.photos import (  # noqa: E402
    MemoEncoder,
    PhotoSet,
    catalogue_records,
    engine_rankings,
    evaluate_rankings,
    leave_out_groups,
    luma_photos,
    myntra_photos,
    record_categories,
)
from hybrid_search.ingest.workers import WORKER_ENV  # noqa: E402
from hybrid_search.ranking.fusion import Hit, fuse  # noqa: E402
from hybrid_search.ranking.photo_fusion import photo_fusion  # noqa: E402

Matrix = np.ndarray[Any, Any]
WINDOW = 100
ENCODERS = ("efficientnet-lite0", "colour", "colour-hellinger")


def default_datasets() -> Path:
    return Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets"))


def embed(photo_set: PhotoSet, spec: str, cache: Path) -> Matrix:
    """``(n_photos, dim)`` L2-normalised vectors of every photo of the set, from the cache when it has them."""
    from hybrid_search.encoders import get_encoder
    from hybrid_search.media.images import load_image

    encoder = get_encoder(spec)
    keys = hashlib.sha256("\n".join(p.key for p in photo_set.photos).encode()).hexdigest()[:12]
    path = cache / f"{photo_set.name}-{encoder.name}-{encoder.version}-{keys}.npy"
    if path.exists():
        cached: Matrix = np.load(path)
        return cached
    started = time.perf_counter()
    vectors = []
    for start in range(0, len(photo_set.photos), 64):
        chunk = photo_set.photos[start : start + 64]
        vectors.append(encoder.embed_documents([load_image(p.path.read_bytes()) for p in chunk]))
    out = np.concatenate(vectors).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    print(
        f"  embedded {len(out)} {photo_set.name} photos with {spec} in {time.perf_counter() - started:.1f}s"
    )
    return out


class Searcher:
    """Exact search over one photo set: product scores = the best cosine of each product's indexed photos."""

    def __init__(
        self,
        photo_set: PhotoSet,
        indexed: Sequence[bool] | None = None,
        groups: list[list[int]] | None = None,
    ) -> None:
        self.set = photo_set
        self.docs = photo_set.doc_ids
        position = {d: i for i, d in enumerate(self.docs)}
        self.photo_doc = np.array([position[p.doc_id] for p in photo_set.photos])
        self.indexed = np.ones(len(photo_set.photos), dtype=bool) if indexed is None else np.asarray(indexed)
        # groups: a query does not see any photo of its leave-out group (the engine evaluation's indices)
        self.hidden = {q: group for group in groups or [] for q in group}

    def product_cosines(self, vectors: Matrix) -> Matrix:
        """``(n_queries, n_docs)``: each product's best photo cosine; -inf for products with no photo searched."""
        out = np.full((len(self.set.queries), len(self.docs)), -np.inf)
        for row, query in enumerate(self.set.queries):
            scores = vectors @ vectors[query]
            scores[~self.indexed] = -np.inf
            scores[self.hidden.get(query, [])] = -np.inf
            scores[query] = -np.inf  # the query photo is never searched
            np.maximum.at(out[row], self.photo_doc, scores)
            if self.set.protocol == "kind":
                out[row, self.photo_doc[query]] = -np.inf  # nor its own product
        return out

    def rankings_from_scores(self, scores: Matrix) -> dict[int, list[str]]:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        return {
            query: [self.docs[j] for j in top[row] if np.isfinite(scores[row, j])]
            for row, query in enumerate(self.set.queries)
        }

    def hit_lists(self, cosines: Matrix, row: int) -> list[Hit]:
        """One retriever's engine-like list: top ``WINDOW`` products, score ``(1 + cos) / 2``."""
        top = np.argsort(-cosines[row], kind="stable")[:WINDOW]
        return [
            Hit(self.docs[j], float((1.0 + cosines[row, j]) / 2.0))
            for j in top
            if np.isfinite(cosines[row, j])
        ]

    def fused_rankings(
        self, lists: dict[str, Matrix], fuser: Callable[[dict[str, list[Hit]]], list[str]]
    ) -> dict[int, list[str]]:
        return {
            query: fuser({name: self.hit_lists(cos, row) for name, cos in lists.items()})
            for row, query in enumerate(self.set.queries)
        }


def score(photo_set: PhotoSet, rankings: dict[int, list[str]]) -> dict[str, float]:
    return dict(evaluate_rankings(photo_set, rankings).metrics)


def run_set(
    photo_set: PhotoSet,
    vectors: dict[str, Matrix],
    categories: dict[str, list[str]],
    kind_weight: float,
    indexed: Sequence[bool] | None = None,
    only: Sequence[str] | None = None,
    groups: list[list[int]] | None = None,
) -> dict[str, dict[str, float]]:
    searcher = Searcher(photo_set, indexed, groups)
    image = searcher.product_cosines(vectors["efficientnet-lite0"])
    colour = searcher.product_cosines(vectors["colour"])
    hellinger = searcher.product_cosines(vectors["colour-hellinger"])
    concat = searcher.product_cosines(
        np.hstack([vectors["efficientnet-lite0"], vectors["colour"]]) / np.sqrt(2.0)
    )
    concat_h = searcher.product_cosines(
        np.hstack([vectors["efficientnet-lite0"], vectors["colour-hellinger"]]) / np.sqrt(2.0)
    )
    pair = {"image_knn": image, "colour_knn": hellinger}
    weights = {"image_knn": 0.5, "colour_knn": 0.5}

    def linear(lists: dict[str, list[Hit]]) -> list[str]:
        return [f.doc_id for f in fuse("linear", lists, weights, normaliser="minmax", limit=10)]

    def photo(kind: float) -> Callable[[dict[str, list[Hit]]], list[str]]:
        def fuser(lists: dict[str, list[Hit]]) -> list[str]:
            fused = photo_fusion(lists, weights, categories, kind_weight=kind, limit=10)
            return [f.doc_id for f in fused]

        return fuser

    methods: dict[str, Callable[[], dict[int, list[str]]]] = {
        "image (EfficientNet-Lite0 mean-pooled)": lambda: searcher.rankings_from_scores(image),
        "colour HSV 8x8x8 cosine": lambda: searcher.rankings_from_scores(colour),
        "concat image + colour 8x8x8": lambda: searcher.rankings_from_scores(concat),
        "colour HSV 16x8x8 Hellinger": lambda: searcher.rankings_from_scores(hellinger),
        "concat image + Hellinger": lambda: searcher.rankings_from_scores(concat_h),
        "linear minmax image + Hellinger (0.5/0.5)": lambda: searcher.fused_rankings(pair, linear),
        "cosine sum image + Hellinger (0.5/0.5)": lambda: searcher.fused_rankings(pair, photo(0.0)),
        f"kind-aware (0.5/0.5, kind {kind_weight:g})": lambda: searcher.fused_rankings(
            pair, photo(kind_weight)
        ),
    }
    return {
        name: score(photo_set, method()) for name, method in methods.items() if only is None or name in only
    }


def through_engine(
    kind: str,
    url: str,
    sets: dict[str, PhotoSet],
    folders: dict[str, Path],
    vectors: dict[str, dict[str, Matrix]],
) -> dict[str, dict[str, float]]:
    """The product end to end on one engine: index each set, search every query photo, score the rankings."""
    import uuid

    from hybrid_search.encoders import get_encoder
    from hybrid_search.engine import create_engine
    from hybrid_search.media.images import load_image
    from hybrid_search.settings import load_settings

    settings = load_settings(engine=kind, engine_url=url)
    encoders = {
        "text": MemoEncoder(get_encoder(settings.text_encoder, modality="text")),
        "image": MemoEncoder(get_encoder(settings.image_encoder, modality="image")),
        "colour": MemoEncoder(get_encoder(settings.colour_encoder)),
    }
    specs = {"image": settings.image_encoder, "colour": settings.colour_encoder}
    scores: dict[str, dict[str, float]] = {}
    with create_engine(settings) as engine:
        for name, photo_set in sets.items():
            for n, photo in enumerate(photo_set.photos):
                image = load_image(
                    photo.path.read_bytes(),
                    max_bytes=settings.image_max_bytes,
                    max_pixels=settings.image_max_pixels,
                )
                for role, spec in specs.items():
                    if spec in vectors[name]:
                        encoders[role].remember(image, vectors[name][spec][n])
            alias = f"photo-eval-{name}-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            rankings = engine_rankings(
                photo_set, folders[name], settings=settings, engine=engine, encoders=encoders, alias=alias
            )
            scores[name] = score(photo_set, rankings)
            print(
                f"  {kind}: {name} indexed and searched in {time.perf_counter() - started:.0f}s "
                f"({encoders['image'].computed} photos embedded)"
            )
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=default_datasets())
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "photos")
    parser.add_argument(
        "--kind-weight", type=float, default=None, help="default: the settings' photo_kind_weight"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--through-engine",
        action="append",
        default=[],
        metavar="KIND=URL",
        help="also run the product end to end on this engine (opensearch=... or elasticsearch=...)",
    )
    parser.add_argument("--skip-offline", action="store_true", help="only the --through-engine runs")
    parser.add_argument(
        "--sets", default="luma,myntra", help="comma-separated photo sets (with --skip-offline)"
    )
    args = parser.parse_args(argv)
    if any(os.environ.get(k) != v for k, v in WORKER_ENV.items()):  # glibc reads them at start only
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_ENV})

    from hybrid_search.settings import load_settings

    kind_weight = args.kind_weight if args.kind_weight is not None else load_settings().photo_kind_weight
    folders = {"luma": args.datasets / "luma", "myntra": args.datasets / "myntra2k"}
    sets = {"luma": luma_photos(folders["luma"]), "myntra": myntra_photos(folders["myntra"])}
    if args.skip_offline:
        sets = {name: sets[name] for name in args.sets.split(",")}
    results: dict[str, dict[str, dict[str, float]]] = {}
    extra: dict[str, dict[str, float]] = {}
    all_vectors = {
        name: {spec: embed(photo_set, spec, args.cache) for spec in ENCODERS}
        for name, photo_set in sets.items()
    }
    engines: dict[str, dict[str, dict[str, float]]] = {}
    for target in args.through_engine:
        kind, _, url = target.partition("=")
        engines[kind] = through_engine(kind, url, sets, folders, all_vectors)
    for name, photo_set in sets.items():
        if args.skip_offline:
            break
        vectors = all_vectors[name]
        categories = record_categories(catalogue_records(photo_set, folders[name]))
        results[name] = run_set(photo_set, vectors, categories, kind_weight)
        if name == "luma":
            kind = [m for m in results[name] if m.startswith("kind-aware")]
            queries = {photo_set.photos[q].key for q in photo_set.queries}
            no_queries = [p.key not in queries for p in photo_set.photos]
            first = {}
            for n, p in enumerate(photo_set.photos):
                first.setdefault(p.doc_id, n)
            main_only = [first[p.doc_id] == n for n, p in enumerate(photo_set.photos)]
            extra["Luma, 8 leave-out groups (engine protocol)"] = run_set(
                photo_set, vectors, categories, kind_weight, None, kind, leave_out_groups(photo_set, 8)
            )[kind[0]]
            extra["Luma without any query photo"] = run_set(
                photo_set, vectors, categories, kind_weight, no_queries, kind
            )[kind[0]]
            extra["Luma with main photos only"] = run_set(
                photo_set, vectors, categories, kind_weight, main_only, kind
            )[kind[0]]

    for kind, scores in engines.items():
        for name in sets:
            results.setdefault(name, {})[f"through {kind} (product defaults)"] = scores[name]
    if set(results) != {"luma", "myntra"}:
        print(json.dumps(results, indent=2))
        return 0
    width = max(len(m) for m in [*results["luma"], *extra]) + 2
    print(f"\n{'method':<{width}} {'Luma R@1':>9} {'Luma R@10':>10} {'Myntra P@10':>12}")
    for method in results["luma"]:
        luma, myntra = results["luma"][method], results["myntra"][method]
        print(
            f"{method:<{width}} {luma['recall@1']:>9.3f} {luma['recall@10']:>10.3f} {myntra['precision@10']:>12.3f}"
        )
    for label, luma in extra.items():
        print(f"{label:<{width}} {luma['recall@1']:>9.3f} {luma['recall@10']:>10.3f} {'':>12}")
    print(
        f"\nLuma: {len(sets['luma'].queries)} queries over {len(sets['luma'].doc_ids)} products; "
        f"Myntra: {len(sets['myntra'].queries)} queries. Goal: Luma R@1 >= 0.80, R@10 >= 0.97, Myntra P@10 >= 0.65"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"methods": results, "luma_variants": extra, "kind_weight": kind_weight}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
