"""Voice search quality: Home Depot dev queries spoken by espeak-ng, recognised by Whisper, then searched.

    python benchmarks/voice.py                                   # 300 queries, the configured model
    python benchmarks/voice.py --models whisper-tiny.en,whisper-base,whisper-tiny.en+whisper-base --json v.json
    python benchmarks/voice.py --skip 600 --queries 400          # queries the defaults were not chosen on
    python benchmarks/voice.py --queries 300 --voice en-us --rate 130

For each query: the typed query is searched (nDCG@10 typed); the query is spoken by ``espeak-ng`` (voice
``en-us``, 150 words a minute unless told: one voice for every model, never chosen per model) into a WAV, kept
under ``.cache/voice-bench/`` so a rerun speaks nothing again; it is decoded and transcribed by each model, once
without and once with the catalogue biasing (hotwords from the index's categories, colours and title words),
and each transcript is searched the same way (nDCG@10 by voice). A model setting joined by ``+`` is an ensemble
(:class:`hybrid_search.voice.Ensemble`). Ways of using the n-best list: ``top`` searches the likeliest
hypothesis; ``api`` does what ``POST /search/voice`` does (:class:`hybrid_search.voice.VoiceSearch`): the catalogue
chooses among the distinct hypotheses (:func:`hybrid_search.voice.choose_transcript`) and the chosen one is searched;
``api-spoken`` searches the same choice as the recogniser wrote it, before
:func:`hybrid_search.voice.spoken.written_form` (what writing numbers, fractions and units as titles do is worth).
Queries are the dev queries in a fixed shuffle (``--seed``); ``--skip`` leaves out the first ones (the
defaults - the catalogue weight, the ensemble - were chosen on the first 600 of seed 7).

Figures: word error rate of the searched transcript against the query (words as
:func:`hybrid_search.voice.normalise_transcript` writes them), nDCG@10 typed and by voice, and their ratio
(goal: >= 0.90) with a 95% bootstrap interval over queries; the recognition latency (decode + encoder + beam search of one utterance, with biasing, as the
API runs it) p50 and p90 per model, measured in this run on this machine. nDCG follows the dataset's protocol:
gain = relevance - 1, unjudged products gain 0. The index is ``bench-homedepot-v1`` (every product title,
MiniLM vectors), built by ``benchmarks/query.py``'s ``ensure_index`` when missing or incomplete. Search: BM25 +
text kNN, linear fusion (the settings' defaults).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.query import HOMEDEPOT_ALIAS, ensure_index, read_products  # noqa: E402
from hybrid_search.encoders.roles import configured_encoders  # noqa: E402
from hybrid_search.engine import create_engine  # noqa: E402
from hybrid_search.errors import ValidationError  # noqa: E402
from hybrid_search.search import SearchQuery, SearchService  # noqa: E402
from hybrid_search.settings import get_settings  # noqa: E402
from hybrid_search.voice import (  # noqa: E402
    TINY_EN,
    catalogue_scores,
    catalogue_vocabulary,
    choose_transcript,
    decode_audio,
    normalise_transcript,
    recogniser,
)

CACHE = REPO / ".cache" / "voice-bench"
CONFIGS = ("plain/top", "plain/api", "biased/top", "biased/api-spoken", "biased/api")


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


def read_queries(
    folder: Path, count: int, seed: int, skip: int = 0
) -> list[tuple[str, str, dict[str, float]]]:
    import random

    qrels: dict[str, dict[str, float]] = defaultdict(dict)
    with (folder / "qrels_dev.tsv").open(encoding="utf-8") as handle:
        for qid, doc, rel in csv.reader(handle, delimiter="\t"):
            qrels[qid][doc] = float(rel)
    with (folder / "queries_dev.tsv").open(encoding="utf-8") as handle:
        queries = [(row[0], row[1]) for row in csv.reader(handle, delimiter="\t") if len(row) >= 2]
    random.Random(seed).shuffle(queries)
    return [(qid, text, qrels[qid]) for qid, text in queries[skip : skip + count] if qrels.get(qid)]


def ratio_interval(voice: list[float], typed: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of mean(voice) / mean(typed), resampling queries (paired)."""
    import random

    rng = random.Random(0)
    n = len(voice)
    ratios = []
    for _ in range(rounds):
        picks = [rng.randrange(n) for _ in range(n)]
        t = sum(typed[i] for i in picks)
        ratios.append(sum(voice[i] for i in picks) / t if t else 0.0)
    ratios.sort()
    return round(ratios[int(0.025 * rounds)], 3), round(ratios[int(0.975 * rounds)], 3)


def speak(text: str, *, voice: str = "en-us", rate: int = 150) -> bytes:
    """``text`` spoken by espeak-ng as WAV bytes, cached by voice, rate and text (written atomically)."""
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    path = CACHE / "wav" / f"{voice}-{rate}" / f"{key}.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(temporary), text], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        os.replace(temporary, path)
    return path.read_bytes()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip", type=int, default=0, help="leave out the first SKIP queries of the shuffle")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--models", help="comma-separated model settings (default: the configured model)")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us)")
    parser.add_argument("--rate", type=int, default=150, help="espeak-ng words per minute (default 150)")
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
    models = args.models.split(",") if args.models else [settings.whisper_model or TINY_EN]
    vocabulary = catalogue_vocabulary(engine, index, words=settings.voice_vocabulary_words)
    log(f"hotwords: {vocabulary.hotwords()}")
    queries = read_queries(folder, args.queries, args.seed, args.skip)
    searched: dict[str, list[str]] = {}

    def search(text: str) -> list[str]:
        if not text.strip():
            return []  # nothing heard: nothing found
        if text not in searched:
            query = SearchQuery(text=text, size=10, facets=False)
            searched[text] = [h.id for h in service.search(query, index=index).hits]
        return searched[text]

    typed_scores = [ndcg(search(text), judged) for _qid, text, judged in queries]
    typed = sum(typed_scores) / len(queries)
    words = sum(len(normalise_transcript(text).split()) for _qid, text, _j in queries)
    result: dict[str, Any] = {
        "queries": len(queries),
        "seed": args.seed,
        "skip": args.skip,
        "speech": f"espeak-ng {args.voice}, {args.rate} words/min",
        "ndcg10_typed": round(typed, 4),
        "hotwords": vocabulary.hotwords(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "models": {},
    }
    for model in models:
        transcriber = recogniser(settings.model_copy(update={"whisper_model": model}))
        started = time.perf_counter()
        transcriber.load()
        load_s = time.perf_counter() - started
        errors = dict.fromkeys(CONFIGS, 0)
        scores: dict[str, list[float]] = {c: [] for c in CONFIGS}
        latency: list[float] = []
        refused = {"plain": 0, "biased": 0}
        examples: list[dict[str, Any]] = []
        started = time.perf_counter()
        for n, (qid, text, judged) in enumerate(queries, 1):
            reference = normalise_transcript(text)
            data = speak(text, voice=args.voice, rate=args.rate)
            row: dict[str, Any] = {"qid": qid, "query": text}
            for bias in ("plain", "biased"):
                t = time.perf_counter()
                audio = decode_audio(data, max_seconds=30.0)
                try:
                    transcript = transcriber.transcribe(
                        audio, vocabulary=vocabulary if bias == "biased" else None
                    )
                except ValidationError:  # the model heard no speech: the API refuses it, it finds nothing
                    transcript = None
                    refused[bias] += 1
                if bias == "biased":
                    latency.append((time.perf_counter() - t) * 1000)
                if transcript is None:
                    row[f"{bias}/n-best"] = []
                    ways = [("top", ""), ("api-spoken", ""), ("api", "")]
                else:
                    texts = [a.text for a in transcript.alternatives]
                    chosen = choose_transcript(transcript, catalogue_scores(engine, index, texts))
                    spoken = next(a.spoken or a.text for a in chosen.alternatives if a.text == chosen.text)
                    row[f"{bias}/n-best"] = [a.as_dict() for a in chosen.alternatives]
                    ways = [("top", transcript.text), ("api-spoken", spoken), ("api", chosen.text)]
                for how, heard in ways:
                    config = f"{bias}/{how}"
                    if config not in scores:
                        continue
                    errors[config] += word_errors(reference, normalise_transcript(heard))[0]
                    scores[config].append(ndcg(search(heard), judged))
                    row[config] = heard
            examples.append(row)
            if n % 10 == 0:
                log(f"{model}: {n}/{len(queries)} queries ({(time.perf_counter() - started) / n:.1f} s each)")
        table = {}
        for config in CONFIGS:
            mean = sum(scores[config]) / len(queries)
            table[config] = {"wer": round(errors[config] / words, 4), "ndcg10": round(mean, 4),
                             "ratio_to_typed": round(mean / typed, 4) if typed else None,
                             "ratio_95": ratio_interval(scores[config], typed_scores)}  # fmt: skip
        result["models"][model] = {
            "folder": transcriber.name,
            "load_s": round(load_s, 2),
            "refused_no_speech": refused,
            "asr_ms_p50": percentile(latency, 0.5),
            "asr_ms_p90": percentile(latency, 0.9),
            "configs": table,
            "examples": examples,
        }

    print(f"{len(queries)} Home Depot dev queries spoken by {result['speech']}; nDCG@10 typed {typed:.4f}")
    print(f"{'model':<30}{'config':<19}{'WER':>7}{'nDCG@10':>9}{'voice/typed':>12}  95% interval")
    for model, figures in result["models"].items():
        for config, row in figures["configs"].items():
            low, high = row["ratio_95"]
            print(f"{model:<30}{config:<19}{row['wer']:>7.3f}{row['ndcg10']:>9.4f}{row['ratio_to_typed']:>12.3f}"
                  f"  [{low:.3f}, {high:.3f}]")  # fmt: skip
        print(f"{model:<30}recognition p50 {figures['asr_ms_p50']} ms, p90 {figures['asr_ms_p90']} ms per utterance "
              f"(load {figures['load_s']} s); refused as no speech: {figures['refused_no_speech']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
