"""Voice search quality: Home Depot dev queries spoken by espeak-ng, recognised by Whisper, then searched.

    python benchmarks/voice.py                       # 100 queries (a fixed random sample), prints the table
    python benchmarks/voice.py --queries 300 --json voice.json

For each query: the typed query is searched (nDCG@10 typed); the query is spoken by ``espeak-ng`` into a WAV,
decoded and transcribed with the configured faster-whisper model (default Whisper tiny.en), once without and
once with the catalogue biasing (hotwords from the index's categories, colours and title words), and each
transcript is searched the same way (nDCG@10 by voice). Three ways of using the n-best list are reported:
``top`` searches the recogniser's best hypothesis, ``catalogue`` the hypothesis the catalogue supports best
(:func:`hybrid_search.voice.choose_transcript`), ``union`` the chosen hypothesis followed by the other
hypotheses' extra words (:func:`hybrid_search.voice.search_text`, what ``POST /search/voice`` searches).

Figures: word error rate of the searched transcript against the query (words as
:func:`hybrid_search.voice.normalise_transcript` writes them), nDCG@10 typed and by voice, and their ratio
(goal: >= 0.90). nDCG follows the dataset's protocol: gain = relevance - 1, unjudged products gain 0.
The index is ``bench-homedepot-v1`` (every product title, MiniLM vectors), built by ``benchmarks/query.py``'s
``ensure_index`` when missing or incomplete. Search: BM25 + text kNN, linear fusion (the settings' defaults).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.query import HOMEDEPOT_ALIAS, ensure_index, read_products  # noqa: E402
from hybrid_search.engine import create_engine  # noqa: E402
from hybrid_search.indexing import configured_encoders  # noqa: E402
from hybrid_search.search import SearchQuery, SearchService  # noqa: E402
from hybrid_search.settings import get_settings  # noqa: E402
from hybrid_search.voice import (  # noqa: E402
    Transcriber,
    catalogue_scores,
    catalogue_vocabulary,
    choose_transcript,
    decode_audio,
    normalise_transcript,
    search_text,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, words in the reference)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)


def ndcg(ranked: list[str], judged: dict[str, float], k: int = 10) -> float:
    gains = {doc: max(rel - 1.0, 0.0) for doc, rel in judged.items()}
    dcg = sum(gains.get(doc, 0.0) / math.log2(n + 2) for n, doc in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(n + 2) for n, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def read_queries(folder: Path, count: int, seed: int) -> list[tuple[str, str, dict[str, float]]]:
    import random

    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    with (folder / "qrels_dev.tsv").open(encoding="utf-8") as handle:
        for qid, doc, rel in csv.reader(handle, delimiter="\t"):
            qrels[qid][doc] = float(rel)
    with (folder / "queries_dev.tsv").open(encoding="utf-8") as handle:
        queries = [(row[0], row[1]) for row in csv.reader(handle, delimiter="\t") if len(row) >= 2]
    random.Random(seed).shuffle(queries)
    return [(qid, text, qrels[qid]) for qid, text in queries[:count] if qrels.get(qid)]


def speak(text: str, path: Path) -> bytes:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    return path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    settings = get_settings()
    folder = args.datasets / "homedepot"
    engine = create_engine(settings)
    encoders = {k: v for k, v in configured_encoders(settings).items() if k == "text"}
    products, base = read_products(folder / "products.csv")
    index = ensure_index(engine, settings, HOMEDEPOT_ALIAS, products, encoders, base_dir=base, rebuild=False,
                         batch=256)  # fmt: skip
    service = SearchService(settings, engine, encoders)
    transcriber = Transcriber.from_settings(settings)
    transcriber.load()
    vocabulary = catalogue_vocabulary(engine, index, words=settings.voice_vocabulary_words)
    log(f"hotwords: {vocabulary.hotwords()}")
    queries = read_queries(folder, args.queries, args.seed)

    def search(text: str) -> list[str]:
        query = SearchQuery(text=text, size=10, facets=False)
        return [h.id for h in service.search(query, index=index).hits]

    configs = (
        "plain/top",
        "plain/catalogue",
        "plain/union",
        "biased/top",
        "biased/catalogue",
        "biased/union",
    )
    errors = dict.fromkeys(configs, 0)
    words = 0
    scores: dict[str, list[float]] = {c: [] for c in ("typed", *configs)}
    examples: list[dict[str, Any]] = []
    asr_ms: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n, (qid, text, judged) in enumerate(queries, 1):
            reference = normalise_transcript(text)
            scores["typed"].append(ndcg(search(text), judged))
            audio = decode_audio(speak(text, Path(tmp) / "q.wav"), max_seconds=30.0)
            row: dict[str, Any] = {"qid": qid, "query": text}
            for bias in ("plain", "biased"):
                t = time.perf_counter()
                transcript = transcriber.transcribe(
                    audio, vocabulary=vocabulary if bias == "biased" else None
                )
                asr_ms.append((time.perf_counter() - t) * 1000)
                texts = [a.text for a in transcript.alternatives]
                chosen = choose_transcript(transcript, catalogue_scores(engine, index, texts))
                union = search_text(chosen)
                for how, heard in (("top", transcript.text), ("catalogue", chosen.text), ("union", union)):
                    config = f"{bias}/{how}"
                    wrong, _count = word_errors(reference, heard)
                    errors[config] += wrong
                    scores[config].append(ndcg(search(heard), judged) if heard else 0.0)
                    row[config] = heard
            words += len(reference.split())
            examples.append(row)
            if n % 10 == 0:
                log(f"{n}/{len(queries)} queries ({(time.perf_counter() - started) / n:.1f} s each)")

    typed = sum(scores["typed"]) / len(queries)
    table = {}
    for config in configs:
        mean = sum(scores[config]) / len(queries)
        table[config] = {"wer": round(errors[config] / words, 4), "ndcg10": round(mean, 4),
                         "ratio_to_typed": round(mean / typed, 4) if typed else None}  # fmt: skip
    asr_ms.sort()
    result = {
        "queries": len(queries),
        "seed": args.seed,
        "model": transcriber.name,
        "ndcg10_typed": round(typed, 4),
        "configs": table,
        "asr_ms_p50": round(asr_ms[len(asr_ms) // 2], 1),
        "hotwords": vocabulary.hotwords(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "examples": examples[:25],
    }
    print(f"{len(queries)} Home Depot dev queries spoken by espeak-ng; nDCG@10 typed {typed:.4f}")
    print(f"{'config':<18}{'WER':>8}{'nDCG@10':>10}{'voice/typed':>13}")
    for config, row in table.items():
        print(f"{config:<18}{row['wer']:>8.3f}{row['ndcg10']:>10.4f}{row['ratio_to_typed']:>13.3f}")
    print(f"recognition p50 {result['asr_ms_p50']} ms per utterance")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
