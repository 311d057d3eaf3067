"""Ingestion throughput: raw encoders in this process vs end to end through queue + workers + engine.

    python benchmarks/ingest.py [--text-products 4000] [--image-copies 3] [--json FILE]

Needs the local stack (`hybrid-search stack up`). In one run, on the same machine:

1. raw encoder throughput in this process, at the configured batch size, models loaded and warmed first:
   text items/s (MiniLM over the product texts), images/s (photo file -> decode -> EfficientNet-Lite0 + colour
   histogram), and the raw per-product rates for text-only and text+photo products;
2. end to end: the same products through ``enqueue_catalogue`` -> Redis -> one ``hybrid-search workers`` process
   (started here on a private queue, models warmed by a small job first) -> bulk writes into a fresh index,
   timed from the first enqueue to the last batch done: text-only (Home Depot titles) and text+photo (the Luma
   catalogue, ``--image-copies`` times under new ids);
3. the ratios end-to-end / raw (target >= 0.85) and the worker's peak RSS (VmHWM of its processes).

Both sides run with the worker's glibc allocator settings (``WORKER_ENV``): the script re-executes itself with
them, since without them batched CPU inference is 2-4x slower and the baseline would flatter the ratio.

The engine runs on the same cores as the worker, so every figure includes its indexing cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hybrid_search.catalog import Product, open_catalogue  # noqa: E402
from hybrid_search.engine import create_engine, definition_from_settings  # noqa: E402
from hybrid_search.indexing import configured_encoders, encoder_records, product_text  # noqa: E402
from hybrid_search.ingest.jobs import enqueue_catalogue, wait_for_job  # noqa: E402
from hybrid_search.queue import WORKER_ENV  # noqa: E402
from hybrid_search.settings import Settings, load_settings  # noqa: E402


def products(path: Path, limit: int | None = None) -> list[Product]:
    out = [p for p in open_catalogue(path).records() if isinstance(p, Product)]
    return out[:limit] if limit else out


def write_jsonl(items: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def raw_rates(
    settings: Settings, text_items: list[Product], photo_items: list[Product], base: Path
) -> dict[str, float]:
    from hybrid_search.images import load_image

    encoders = configured_encoders(settings)
    text, image, colour = encoders["text"], encoders["image"], encoders.get("colour")
    text.embed_documents(["warm up"] * 8)
    warm = load_image(base / photo_items[0].main_image)  # type: ignore[operator]
    image.embed_documents([warm] * 4)

    texts = [product_text(p.document()) for p in text_items]
    t0 = time.perf_counter()
    for start in range(0, len(texts), settings.ingest_batch_size):
        text.embed_documents(texts[start : start + settings.ingest_batch_size])
    text_s = time.perf_counter() - t0

    photo_texts = [product_text(p.document()) for p in photo_items]
    # the same photos the workers embed: every photo of a product (up to photo_vectors_max) when the index keeps
    # one vector per photo, else the main one
    keep = settings.photo_vectors_max if settings.photo_vectors else 1
    paths = [base / image for p in photo_items for image in p.images[:keep]]
    t0 = time.perf_counter()
    for start in range(0, len(paths), settings.ingest_batch_size):
        batch = [load_image(p.read_bytes()) for p in paths[start : start + settings.ingest_batch_size]]
        image.embed_documents(batch)
        if colour is not None:
            colour.embed_documents(batch)
    image_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(photo_texts), settings.ingest_batch_size):
        text.embed_documents(photo_texts[start : start + settings.ingest_batch_size])
    photo_text_s = time.perf_counter() - t0
    return {
        "encoder_text_per_s": len(texts) / text_s,
        "encoder_images_per_s": len(paths) / image_s,
        "raw_text_products_per_s": len(texts) / text_s,
        "raw_multimodal_products_per_s": len(photo_items) / (image_s + photo_text_s),
        "photos_per_product": len(paths) / len(photo_items),
    }


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """Largest VmHWM of the worker and its children (the prefork pool processes do the work), and their sum."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    peaks = []
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks, default=0.0), sum(peaks)


def end_to_end(settings: Settings, catalogue: Path, index: str) -> float:
    job = enqueue_catalogue(settings, open_catalogue(catalogue), index=index)
    t0 = time.perf_counter()
    result = wait_for_job(settings, job, poll_s=0.2, timeout_s=3600)
    elapsed = time.perf_counter() - t0
    if result["dead_lettered"]:
        print(f"warning: {result['dead_lettered']} products dead-lettered", file=sys.stderr)
    return float(result["indexed"]) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets",
        type=Path,
        default=Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets")),
    )
    parser.add_argument(
        "--text-products", type=int, default=4000, help="Home Depot titles for the text-only run"
    )
    parser.add_argument("--image-copies", type=int, default=3, help="copies of the Luma catalogue (new ids)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="worker processes (default: the worker_concurrency setting); each gets cores/processes torch "
        "threads unless HYBRID_SEARCH_WORKER_TORCH_THREADS says otherwise; the raw side always runs in this one "
        "process with torch's default threads",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in WORKER_ENV.items()):
        # the raw baseline must run with the allocator settings the worker gets (glibc reads them at start-up)
        os.execvpe(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WORKER_ENV})

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(ingest_queue=queue)
    luma = args.datasets / "luma"
    hd = products(args.datasets / "homedepot" / "products.csv", args.text_products)
    photo = products(luma)
    print(f"raw encoders in this process (batch {settings.ingest_batch_size}) ...", flush=True)
    raw = raw_rates(settings, hd, photo * args.image_copies, luma)

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    text_file = write_jsonl([p.to_input() for p in hd], tmp / "text.jsonl")
    copies = [{**p.to_input(luma), "id": f"{p.id}-c{c}"} for c in range(args.image_copies) for p in photo]
    photo_file = write_jsonl(copies, tmp / "photos.jsonl")
    processes = args.concurrency or settings.worker_concurrency
    # small warm-up batches, two per worker process, so that every process has loaded its models
    warm_file = write_jsonl(
        [{**p.to_input(luma), "id": f"warm-{n}-{p.id}"} for n in range(processes) for p in photo[:16]],
        tmp / "warm.jsonl",
    )

    env = {**os.environ, **WORKER_ENV, "HYBRID_SEARCH_INGEST_QUEUE": queue,
           "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(luma)])}  # fmt: skip
    log = tmp / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "hybrid_search.cli", "workers", "--loglevel", "warning",
                                   "--concurrency", str(processes)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    engine = create_engine(settings)
    names = {k: f"bench-ingest-{k}-{uuid.uuid4().hex[:6]}" for k in ("warm", "text", "photo")}
    try:
        definition = definition_from_settings(settings, encoder_records(settings))
        for name in names.values():
            engine.create_index(name, definition)
        photo_settings = load_settings(ingest_queue=queue, image_roots=[luma])
        print("warming the worker ...", flush=True)
        end_to_end(photo_settings.model_copy(update={"ingest_batch_size": 8}), warm_file, names["warm"])
        print(f"end to end: {len(hd)} text-only products ...", flush=True)
        e2e_text = end_to_end(settings, text_file, names["text"])
        print(f"end to end: {len(copies)} products with photos ...", flush=True)
        e2e_photo = end_to_end(photo_settings, photo_file, names["photo"])
        rss, rss_total = peak_rss_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        for name in names.values():
            for version in engine.versions(name).values():
                engine.delete_index(version)
        engine.close()

    figures = {
        "encoder_text_per_s": round(raw["encoder_text_per_s"], 1),
        "encoder_images_per_s": round(raw["encoder_images_per_s"], 1),
        "raw_multimodal_products_per_s": round(raw["raw_multimodal_products_per_s"], 1),
        "photos_per_product": round(raw["photos_per_product"], 2),
        "e2e_text_products_per_s": round(e2e_text, 1),
        "e2e_multimodal_products_per_s": round(e2e_photo, 1),
        "ratio_text": round(e2e_text / raw["raw_text_products_per_s"], 3),
        "ratio_multimodal": round(e2e_photo / raw["raw_multimodal_products_per_s"], 3),
        "worker_peak_rss_mb": round(rss, 1),
        "workers_total_peak_rss_mb": round(rss_total, 1),
        "worker_processes": processes,
        "batch_size": settings.ingest_batch_size,
        "text_products": len(hd),
        "multimodal_products": len(copies),
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
