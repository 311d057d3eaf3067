"""Ingestion throughput: raw encoders (with the workers' parallelism) vs end to end through queue + workers + engine.

    python benchmarks/ingest.py [--text-products 4000] [--image-copies 3] [--concurrency N]
                                [--compare-image-batch 32] [--json FILE]

Needs the local stack (`hybrid-search stack up`). In one run, on the same machine:

1. raw encoder throughput with the workers' parallelism (``--concurrency`` processes side by side, each with the
   torch threads a worker process gets, each embedding its share), at the configured batch sizes, models loaded
   and warmed first:
   text items/s (MiniLM over the product texts), images/s (photo file -> decode -> EfficientNet-Lite0 + colour
   histogram), and the raw per-product rates for text-only and text+photo products. Measured twice, before and
   after the end-to-end runs: the ratios use the mean of the two, and ``raw_spread`` (the larger of the two
   relative differences, text and photos) says how much the machine moved meanwhile.
   ``--compare-image-batch N`` also measures images/s with the image encoder at batch size N, in the same
   processes and between the same two runs (to compare a batch size with the default);
2. end to end: the same products through ``enqueue_catalogue`` -> Redis -> one ``hybrid-search workers`` process
   (started here on a private queue, models warmed by a small job first) -> bulk writes into a fresh index,
   timed from the first enqueue to the last batch done: text-only (Home Depot titles) and text+photo (the Luma
   catalogue, ``--image-copies`` times under new ids);
3. the ratios end-to-end / raw (target >= 0.85), the worker's peak RSS (VmHWM of its processes: the largest
   one, and their sum), and the 1-minute load average at the start and at the end of the run.

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

from hybrid_search.catalog import Product, open_catalogue, product_text  # noqa: E402
from hybrid_search.encoders.base import DEFAULT_IMAGE_BATCH_SIZE  # noqa: E402
from hybrid_search.encoders.roles import configured_encoders, encoder_records  # noqa: E402
from hybrid_search.engine import create_engine, definition_from_settings  # noqa: E402
from hybrid_search.ingest.enqueue import enqueue_catalogue  # noqa: E402
from hybrid_search.ingest.jobs import wait_for_job  # noqa: E402
from hybrid_search.ingest.workers import WORKER_ENV, worker_torch_threads  # noqa: E402
from hybrid_search.settings import Settings, load_settings  # noqa: E402


def products(path: Path, limit: int | None = None) -> list[Product]:
    out = [p for p in open_catalogue(path).records() if isinstance(p, Product)]
    return out[:limit] if limit else out


def write_jsonl(items: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def _raw_share(job: dict[str, Any], barrier: Any, results: Any) -> None:
    """One raw process: its share of the items through the encoders, each phase started with the others."""
    import torch

    from hybrid_search.encoders import get_encoder
    from hybrid_search.media.images import load_image

    torch.set_num_threads(job["threads"])
    settings = load_settings()
    encoders = configured_encoders(settings)
    text, image, colour = encoders["text"], encoders["image"], encoders.get("colour")
    compare = None
    if job["compare_batch"]:
        compare = get_encoder(
            settings.image_encoder, device=settings.device, batch_size=job["compare_batch"], modality="image"
        )
    warm = load_image(Path(job["warm"]).read_bytes())
    text.embed_documents(["warm up"] * 8)
    for encoder in (image, compare):
        if encoder is not None:
            encoder.embed_documents([warm] * 4)
    step = settings.ingest_batch_size

    def texts(items: list[str]) -> None:
        for start in range(0, len(items), step):
            text.embed_documents(items[start : start + step])

    def photos(encoder: Any, paths: list[str]) -> None:
        for start in range(0, len(paths), step):
            batch = [load_image(Path(p).read_bytes()) for p in paths[start : start + step]]
            encoder.embed_documents(batch)
            if colour is not None:
                colour.embed_documents(batch)

    phases: dict[str, Any] = {
        "text": lambda: texts(job["texts"]),
        "images": lambda: photos(image, job["paths"]),
        "photo_text": lambda: texts(job["photo_texts"]),
    }
    if compare is not None:
        phases["compare"] = lambda: photos(compare, job["paths"])
    times = {}
    for name, phase in phases.items():
        barrier.wait()  # every process starts each phase together, as the workers run side by side
        t0 = time.monotonic()
        phase()
        times[name] = (t0, time.monotonic())
    results.put(times)


def raw_rates(
    settings: Settings,
    text_items: list[Product],
    photo_items: list[Product],
    base: Path,
    processes: int,
    compare_batch: int | None = None,
) -> dict[str, float]:
    """Raw encoder rates with the workers' parallelism: ``processes`` processes side by side, each with the torch
    threads a worker process gets, each embedding its share; a phase lasts from the first start to the last end.
    """
    import multiprocessing

    texts = [product_text(p.document()) for p in text_items]
    photo_texts = [product_text(p.document()) for p in photo_items]
    # the same photos the workers embed: every photo of a product (up to photo_vectors_max) when the index keeps
    # one vector per photo, else the main one
    keep = settings.photo_vectors_max if settings.photo_vectors else 1
    paths = [str(base / image) for p in photo_items for image in p.images[:keep]]
    threads = worker_torch_threads(settings.model_copy(update={"worker_concurrency": processes}))
    # fresh interpreters: the allocator settings, no forked torch
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    jobs = [
        {"texts": texts[n::processes], "photo_texts": photo_texts[n::processes], "paths": paths[n::processes],
         "threads": threads, "compare_batch": compare_batch, "warm": paths[0]}
        for n in range(processes)
    ]  # fmt: skip
    children = [context.Process(target=_raw_share, args=(job, barrier, results)) for job in jobs]
    for child in children:
        child.start()
    times = [results.get(timeout=3600) for _child in children]
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"a raw encoder process failed (exit code {child.exitcode})")

    def seconds(phase: str) -> float:
        return max(t[phase][1] for t in times) - min(t[phase][0] for t in times)

    text_s, image_s, photo_text_s = seconds("text"), seconds("images"), seconds("photo_text")
    rates = {
        "encoder_text_per_s": len(texts) / text_s,
        "encoder_images_per_s": len(paths) / image_s,
        "raw_text_products_per_s": len(texts) / text_s,
        "raw_multimodal_products_per_s": len(photo_items) / (image_s + photo_text_s),
        "photos_per_product": len(paths) / len(photo_items),
    }
    if compare_batch:  # the same photos through an image encoder at another batch size
        rates["compare_images_per_s"] = len(paths) / seconds("compare")
    return rates


def mean_rates(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    return {key: (first[key] + second[key]) / 2 for key in first}


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
        "threads unless HYBRID_SEARCH_WORKER_TORCH_THREADS says otherwise; the raw side runs as many processes "
        "with as many threads",
    )
    parser.add_argument(
        "--compare-image-batch",
        type=int,
        default=None,
        metavar="N",
        help="also measure raw images/s with the image encoder at batch size N (e.g. 32, the former default)",
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
    load_start = os.getloadavg()[0]
    processes = args.concurrency or settings.worker_concurrency
    image_batch = settings.encode_batch_size or DEFAULT_IMAGE_BATCH_SIZE
    print(f"raw encoders: {processes} process(es), image batch {image_batch} ...", flush=True)
    raw_before = raw_rates(settings, hd, photo * args.image_copies, luma, processes, args.compare_image_batch)

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    text_file = write_jsonl([p.to_input() for p in hd], tmp / "text.jsonl")
    copies = [{**p.to_input(luma), "id": f"{p.id}-c{c}"} for c in range(args.image_copies) for p in photo]
    photo_file = write_jsonl(copies, tmp / "photos.jsonl")
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
        worker.send_signal(signal.SIGTERM)  # its cores are the raw side's again
        worker.wait(timeout=60)
        print("raw encoders again ...", flush=True)
        raw_after = raw_rates(
            settings, hd, photo * args.image_copies, luma, processes, args.compare_image_batch
        )
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        for name in names.values():
            for version in engine.versions(name).values():
                engine.delete_index(version)
        engine.close()

    raw = mean_rates(raw_before, raw_after)
    spread = max(
        abs(raw_before[key] - raw_after[key]) / raw[key]
        for key in ("encoder_text_per_s", "encoder_images_per_s")
    )
    figures: dict[str, Any] = {
        "encoder_text_per_s": round(raw["encoder_text_per_s"], 1),
        "encoder_images_per_s": round(raw["encoder_images_per_s"], 1),
        "image_batch_size": image_batch,
    }
    if args.compare_image_batch:
        figures[f"encoder_images_per_s_batch{args.compare_image_batch}"] = round(
            raw["compare_images_per_s"], 1
        )
    figures |= {
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
        "raw_text_per_s_before_after": [round(raw_before["encoder_text_per_s"], 1),
                                        round(raw_after["encoder_text_per_s"], 1)],
        "raw_images_per_s_before_after": [round(raw_before["encoder_images_per_s"], 1),
                                          round(raw_after["encoder_images_per_s"], 1)],
        "raw_spread": round(spread, 3),
        "load_avg_1m_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }  # fmt: skip
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
