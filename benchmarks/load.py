"""HTTP load on the API: concurrent clients send text and photo searches for a fixed time per concurrency level.

    python benchmarks/load.py                                   # own server on the Luma index, 1,2,4,8,16 clients
    python benchmarks/load.py --duration 30 --concurrency 4,8 --image-share 0.5 --json load.json
    python benchmarks/load.py --url http://127.0.0.1:8000       # a server that is already running

Without ``--url`` the script serves the API itself (``hybrid-search serve`` in a subprocess on a free loopback
port, models preloaded, voice off) on the Luma catalogue index ``bench-luma`` of ``benchmarks/query.py``, built
(once, with the library ``Ingestor``) when missing, incomplete or made by other encoders than the settings name
(per vector field: encoder name, version and dimension against the index ``_meta``; an index from an older colour
encoder would answer every photo search with HTTP 409). With ``--url`` the server searches its own index, which
should hold the Luma catalogue (``hybrid-search run --catalog ../shared/datasets/luma``).

Each client is a closed loop (send, wait for the answer, send the next) over one shared connection pool (httpx,
asyncio). A request is a photo search (``POST /search/image``, a Luma product photo) with probability
``--image-share``, else a text search (``POST /search``, a Luma title or the last one or two words of one, or a
Home Depot query with ``--text homedepot``), each a page of 12 with facets, as the search page asks. Per level:
``--warmup`` seconds untimed, then ``--duration`` seconds timed (requests still running at the end are waited
for and counted). An error is a non-2xx answer or a failed request. Reported per level: requests per second,
p50/p95/p99 latency (all, text, photo) and errors; then the highest concurrency whose p95 stays under
``--target-ms`` (200) with no errors. The client shares the machine with the server: the load average is
printed with each level.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.query import LUMA_ALIAS, default_datasets, ensure_index, log, percentile, read_products  # noqa: E402
from hybrid_search.settings import get_settings  # noqa: E402

PAGE_SIZE = 12  # what the search page asks for


@dataclass
class Workload:
    texts: list[str]
    photos: list[tuple[str, bytes]]
    image_share: float


@dataclass
class Level:
    clients: int
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"text": [], "image": []})
    errors: Counter[str] = field(default_factory=Counter)
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def summary(self, target_ms: float) -> dict[str, Any]:
        every = self.latencies["text"] + self.latencies["image"]
        done = len(every) + sum(self.errors.values())
        row: dict[str, Any] = {
            "clients": self.clients,
            "requests": done,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "requests_per_s": round(done / self.seconds, 2) if self.seconds else 0.0,
            "load_average": [round(x, 2) for x in self.load_average],
        }
        for name, values in (("all", every), *self.latencies.items()):
            for q in (50, 95, 99):
                row[f"{name}_p{q}_ms"] = percentile(values, q) if values else None
            row[f"{name}_count"] = len(values)
        row["meets_target"] = bool(every) and row["errors"] == 0 and row["all_p95_ms"] < target_ms
        return row


# ---- the workload -------------------------------------------------------------------------------------------


def luma_workload(datasets: Path, image_share: float, text_source: str, seed: int) -> Workload:
    products, base_dir = read_products(datasets / "luma")
    texts: list[str] = []
    if text_source == "luma":
        for product in products:
            words = product.title.split()
            texts += [product.title, words[-1], " ".join(words[-2:])]
    else:
        with (datasets / "homedepot" / "queries_dev.tsv").open(encoding="utf-8", newline="") as handle:
            texts = [row[1] for row in csv.reader(handle, delimiter="\t") if len(row) >= 2 and row[1].strip()]
    photos = [(p.id, (base_dir / p.main_image).read_bytes()) for p in products if p.main_image]
    rng = random.Random(seed)
    rng.shuffle(texts)
    rng.shuffle(photos)
    return Workload(texts, photos, image_share)


async def one_request(
    client: httpx.AsyncClient, work: Workload, rng: random.Random, level: Level, timed: bool
) -> None:
    kind = "image" if work.photos and rng.random() < work.image_share else "text"
    started = time.perf_counter()
    try:
        if kind == "image":
            name, data = rng.choice(work.photos)
            response = await client.post("/search/image", files={"image": (f"{name}.jpg", data, "image/jpeg")},
                                         data={"size": str(PAGE_SIZE)})  # fmt: skip
        else:
            response = await client.post("/search", json={"text": rng.choice(work.texts), "size": PAGE_SIZE})
        await response.aread()
        outcome = None if response.is_success else f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    elapsed = (time.perf_counter() - started) * 1000.0
    if not timed:
        return
    if outcome is None:
        level.latencies[kind].append(elapsed)
    else:
        level.errors[outcome] += 1


async def run_level(
    url: str, work: Workload, clients: int, duration: float, warmup: float, seed: int
) -> Level:
    level = Level(clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def loop(n: int, until: float, timed: bool) -> None:
            rng = random.Random(seed * 1000 + n + (7 if timed else 0))
            while time.perf_counter() < until:
                await one_request(client, work, rng, level, timed)

        if warmup > 0:
            end = time.perf_counter() + warmup
            await asyncio.gather(*(loop(n, end, False) for n in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(loop(n, started + duration, True) for n in range(clients)))
        level.seconds = time.perf_counter() - started
    level.load_average = os.getloadavg()
    return level


# ---- the server ---------------------------------------------------------------------------------------------


def ensure_luma_index(datasets: Path) -> str:
    """``bench-luma-v1`` with the Luma catalogue, built like ``benchmarks/query.py``: reused only when it holds
    every product and its vector fields were made by the configured encoders (else rebuilt, saying why)."""
    from hybrid_search.encoders.roles import configured_encoders
    from hybrid_search.engine import create_engine

    settings = get_settings()
    products, base_dir = read_products(datasets / "luma")
    with create_engine(settings) as engine:
        ensure_index(engine, settings, LUMA_ALIAS, products, configured_encoders(settings),
                     base_dir=base_dir, rebuild=False, batch=64)  # fmt: skip
    return LUMA_ALIAS


def start_server(datasets: Path, alias: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "HYBRID_SEARCH_INDEX_ALIAS": alias, "HYBRID_SEARCH_VOICE_ENABLED": "false",
           "HYBRID_SEARCH_API_PRELOAD_MODELS": "true",
           "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(datasets / "luma")])}  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hybrid_search.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the API server exited; its log ({log_path}):\n{log_path.read_text()[-3000:]}")
        try:
            httpx.get(url + "/openapi.json", timeout=2.0)
            return process, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the API server did not answer in 300 s (log {log_path})") from None
            time.sleep(0.5)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- main ---------------------------------------------------------------------------------------------------


def concurrency_list(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--concurrency takes integers like 1,2,4,8, got {text!r}") from None
    if not levels or any(n < 1 or n > 64 for n in levels):
        raise argparse.ArgumentTypeError(
            "--concurrency levels must be 1 to 64 (the server admits 64 at once)"
        )
    return levels


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/load.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running API (default: serve one on the Luma benchmark index)")
    parser.add_argument("--datasets", type=Path, default=default_datasets())
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per level (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="untimed seconds per level first (default 2)"
    )
    parser.add_argument("--concurrency", type=concurrency_list, default=[1, 2, 4, 8, 16],
                        help="comma-separated client counts (default 1,2,4,8,16)")  # fmt: skip
    parser.add_argument(
        "--image-share", type=float, default=0.2, help="share of photo searches (default 0.2)"
    )
    parser.add_argument(
        "--text", choices=("luma", "homedepot"), default="luma", help="text queries (default luma)"
    )
    parser.add_argument("--target-ms", type=float, default=200.0, help="the p95 goal (default 200 ms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args(argv)
    if not 0.0 <= args.image_share <= 1.0:
        parser.error("--image-share must be between 0 and 1")
    if args.duration <= 0:
        parser.error("--duration must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = luma_workload(args.datasets, args.image_share, args.text, args.seed)
    process = None
    url = args.url
    if url is None:
        alias = ensure_luma_index(args.datasets)
        log_path = Path(tempfile.gettempdir()) / f"bench-load-server-{os.getpid()}.log"
        log(f"starting the API server on {alias} (log {log_path}) ...")
        process, url = start_server(args.datasets, alias, log_path)
    try:
        health = httpx.get(url + "/health", timeout=30).json()
        log(f"server {url}: {health.get('components', {}).get('engine', {}).get('detail', health)}")
        levels = []
        for clients in args.concurrency:
            level = asyncio.run(run_level(url, work, clients, args.duration, args.warmup, args.seed))
            row = level.summary(args.target_ms)
            levels.append(row)
            log(f"  {clients:>3} clients: {row['requests_per_s']:.1f} req/s, p95 {row['all_p95_ms']} ms, "
                f"{row['errors']} errors, load {row['load_average'][0]}")  # fmt: skip
    finally:
        if process is not None:
            stop_server(process)

    header = (f"{'clients':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
              f"{'text p95':>10}{'photo p95':>11}{'load 1m':>9}")  # fmt: skip
    print(header)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for row in levels:
        print(f"{row['clients']:>7}{row['requests_per_s']:>8.1f}{ms(row['all_p50_ms']):>9}{ms(row['all_p95_ms']):>9}"
              f"{ms(row['all_p99_ms']):>9}{row['errors']:>8}{ms(row['text_p95_ms']):>10}{ms(row['image_p95_ms']):>11}"
              f"{row['load_average'][0]:>9.2f}")  # fmt: skip
    good = [row for row in levels if row["meets_target"]]
    best = max(good, key=lambda r: r["clients"]) if good else None
    if best is None:
        print(f"no level kept p95 under {args.target_ms:.0f} ms with zero errors")
    else:
        print(f"highest concurrency with p95 < {args.target_ms:.0f} ms and zero errors: {best['clients']} clients "
              f"({best['requests_per_s']:.1f} req/s, p95 {best['all_p95_ms']:.1f} ms)")  # fmt: skip
    result = {
        "levels": levels,
        "best_clients": best["clients"] if best else None,
        "setup": {
            "url": url if args.url else "own server (loopback)",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "image_share": args.image_share,
            "text_queries": args.text,
            "page_size": PAGE_SIZE,
            "target_p95_ms": args.target_ms,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
