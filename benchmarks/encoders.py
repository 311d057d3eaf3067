"""Encoder throughput: MiniLM titles/s by batch size, EfficientNet-Lite0 images/s with and without channels-last.

    python benchmarks/encoders.py                    # this process, with whatever malloc settings it has
    python benchmarks/encoders.py --compare-malloc   # two child runs: glibc defaults vs the tuned variables

Text: ~2000 product titles (the Luma catalogue's names, then Home Depot titles), embedded with
``get_encoder("minilm")`` at each ``--text-batch``; the model is loaded and warmed before timing.
Images: ~200 Luma photos end to end (JPEG file -> ``load_image`` -> preprocessing -> model -> vectors) at
``--image-batch``, with the model in channels-last and in plain NCHW memory format, repeats interleaved.
Decode alone is timed too. Each figure is the median of ``--repeats`` timed passes.

glibc reads the malloc variables at process start only, which is why ``--compare-malloc`` measures in
child processes: MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000.
Minor page faults and system CPU time of each timed pass are printed beside the rates to show the effect.
Data is read from --datasets (default $HYBRID_SEARCH_DATASETS or <repo>/../shared/datasets).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MALLOC_TUNING = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}


def default_datasets() -> Path:
    return Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets"))


def load_titles(datasets: Path, count: int) -> list[str]:
    titles: list[str] = []
    with (datasets / "luma" / "products_flat.csv").open(encoding="utf-8", newline="") as handle:
        titles.extend(row["name"].strip() for row in csv.DictReader(handle))
    with (datasets / "homedepot" / "products.csv").open(
        encoding="utf-8", errors="replace", newline=""
    ) as handle:
        for row in csv.DictReader(handle):
            if len(titles) >= count:
                break
            titles.append(row["title"].strip())
    return titles[:count]


def load_photo_paths(datasets: Path, count: int) -> list[Path]:
    luma = datasets / "luma"
    paths: list[Path] = []
    with (luma / "products_flat.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            for relative in row["images"].split("|"):
                path = luma / relative.strip()
                if relative.strip() and path.is_file() and path not in paths:
                    paths.append(path)
    return paths[:count]


def timed(fn: Callable[..., Any], *args: Any) -> dict[str, float]:
    """Wall seconds, minor page faults and system CPU seconds of ``fn(*args)``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    fn(*args)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "minor_faults": float(after.ru_minflt - before.ru_minflt),
        "system_s": after.ru_stime - before.ru_stime,
    }


def summarise(runs: list[dict[str, float]], items: int) -> dict[str, float]:
    seconds = statistics.median(run["seconds"] for run in runs)
    return {
        "items": items,
        "seconds": seconds,
        "per_s": items / seconds,
        "minor_faults": statistics.median(run["minor_faults"] for run in runs),
        "system_s": statistics.median(run["system_s"] for run in runs),
    }


def bench_text(args: argparse.Namespace) -> dict[str, Any]:
    from hybrid_search.encoders import get_encoder

    titles = load_titles(args.datasets, args.text_count)
    results: dict[str, Any] = {"titles": len(titles)}
    for batch_size in args.text_batch:
        encoder = get_encoder("minilm", batch_size=batch_size, device=args.device)
        load = timed(encoder.embed_documents, titles[:batch_size])  # load + warm up
        runs = [timed(encoder.embed_documents, titles) for _ in range(args.repeats)]
        results[f"batch_{batch_size}"] = {
            **summarise(runs, len(titles)),
            "load_and_warmup_s": load["seconds"],
        }
    query = get_encoder("minilm", device=args.device)
    query.embed_query("warm up")
    latencies = sorted(timed(query.embed_query, "red hoodie")["seconds"] for _ in range(50))
    results["query_p50_ms"] = 1000 * latencies[len(latencies) // 2]
    return results


def bench_images(args: argparse.Namespace) -> dict[str, Any]:
    from hybrid_search.encoders.image import EfficientNetLite0Encoder
    from hybrid_search.images import load_image

    paths = load_photo_paths(args.datasets, args.image_count)
    variants = {
        "channels_last": EfficientNetLite0Encoder(
            batch_size=args.image_batch, channels_last=True, device=args.device
        ),
        "nchw": EfficientNetLite0Encoder(
            batch_size=args.image_batch, channels_last=False, device=args.device
        ),
    }
    warm = [load_image(path) for path in paths[: args.image_batch]]
    for encoder in variants.values():
        encoder.embed_documents(warm)  # load + warm up

    def end_to_end(encoder: EfficientNetLite0Encoder) -> None:
        encoder.embed_documents([load_image(path) for path in paths])

    def decode_all() -> None:
        for path in paths:
            load_image(path)

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved, so drift of a shared machine hits both alike
        for name, encoder in variants.items():
            runs[name].append(timed(end_to_end, encoder))
    decode = [timed(decode_all) for _ in range(args.repeats)]
    results: dict[str, Any] = {"photos": len(paths), "batch": args.image_batch}
    for name, variant_runs in runs.items():
        results[name] = summarise(variant_runs, len(paths))
    results["decode_only"] = summarise(decode, len(paths))
    return results


def environment() -> dict[str, Any]:
    import torch

    from hybrid_search.encoders import pick_device

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "device": pick_device(None),
        "malloc_tuned": all(os.environ.get(key) == value for key, value in MALLOC_TUNING.items()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"environment": environment()}
    if args.device:
        results["environment"]["device"] = args.device
    if not args.skip_text:
        results["text"] = bench_text(args)
    if not args.skip_images:
        results["images"] = bench_images(args)
    return results


def report(label: str, results: dict[str, Any]) -> None:
    env = results["environment"]
    print(
        f"== {label}: torch {env['torch']}, {env['threads']} threads on {env['cpus']} CPUs, "
        f"device {env['device']}, malloc tuned: {env['malloc_tuned']}"
    )
    text = results.get("text")
    if text:
        rates = {key: value for key, value in text.items() if key.startswith("batch_")}
        for key, value in rates.items():
            print(
                f"  MiniLM {text['titles']} titles, {key.replace('_', ' ')}: {value['per_s']:8.1f} titles/s "
                f"({value['seconds']:.2f} s; load+warm-up {value['load_and_warmup_s']:.2f} s; "
                f"{value['minor_faults']:.0f} minor faults, {value['system_s']:.2f} s system)"
            )
        keys = list(rates)
        if len(keys) >= 2:
            print(
                f"  ratio {keys[-1]} / {keys[0]}: {rates[keys[-1]]['per_s'] / rates[keys[0]]['per_s']:.2f}x"
            )
        print(f"  one query p50: {text['query_p50_ms']:.1f} ms")
    images = results.get("images")
    if images:
        for key in ("channels_last", "nchw", "decode_only"):
            value = images[key]
            what = (
                "decode only"
                if key == "decode_only"
                else f"EfficientNet-Lite0 {key}, batch {images['batch']}"
            )
            print(
                f"  {what}, {images['photos']} photos: {value['per_s']:8.1f} images/s "
                f"({value['seconds']:.2f} s; {value['minor_faults']:.0f} minor faults, "
                f"{value['system_s']:.2f} s system)"
            )
        ratio = images["channels_last"]["per_s"] / images["nchw"]["per_s"]
        print(f"  ratio channels-last / NCHW: {ratio:.2f}x")


def compare_malloc(args: argparse.Namespace) -> None:
    child_args = [sys.executable, str(Path(__file__).resolve()), "--json", *args.passthrough]
    outcomes: dict[str, dict[str, Any]] = {}
    for label, tuned in (("glibc default malloc", False), ("tuned malloc", True)):
        env = {key: value for key, value in os.environ.items() if key not in MALLOC_TUNING}
        if tuned:
            env.update(MALLOC_TUNING)
        completed = subprocess.run(child_args, env=env, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            sys.stderr.write(completed.stderr)
            raise SystemExit(f"child run ({label}) failed with exit code {completed.returncode}")
        outcomes[label] = json.loads(completed.stdout.strip().splitlines()[-1])
        report(label, outcomes[label])
    default, tuned_run = outcomes["glibc default malloc"], outcomes["tuned malloc"]
    print("== tuned / default")
    for section, keys in (
        ("text", [k for k in default.get("text", {}) if k.startswith("batch_")]),
        ("images", ["channels_last", "nchw"]),
    ):
        if section not in default:
            continue
        for key in keys:
            ratio = tuned_run[section][key]["per_s"] / default[section][key]["per_s"]
            print(f"  {section} {key}: {ratio:.2f}x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=Path, default=default_datasets(), help="shared datasets folder")
    parser.add_argument("--text-count", type=int, default=2000, help="titles to embed (default 2000)")
    parser.add_argument("--text-batch", type=int, nargs="+", default=[64, 256], help="batch sizes (64 256)")
    parser.add_argument("--image-count", type=int, default=200, help="Luma photos (default 200)")
    parser.add_argument("--image-batch", type=int, default=32, help="image batch size (default 32)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per figure, median kept (2)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--skip-text", action="store_true", help="skip the MiniLM measurement")
    parser.add_argument("--skip-images", action="store_true", help="skip the EfficientNet-Lite0 measurement")
    parser.add_argument("--compare-malloc", action="store_true", help="run twice: default and tuned malloc")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the report")
    args = parser.parse_args(argv)
    raw = list(sys.argv[1:] if argv is None else argv)
    args.passthrough = [item for item in raw if item not in ("--compare-malloc", "--json")]
    if args.repeats < 1 or args.text_count < 1 or args.image_count < 1:
        parser.error("counts and --repeats must be positive")
    if not (args.datasets / "luma" / "products_flat.csv").is_file():
        parser.error(f"no Luma catalogue under {args.datasets} (set --datasets or HYBRID_SEARCH_DATASETS)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.compare_malloc:
        compare_malloc(args)
        return
    results = run(args)
    if args.json:
        print(json.dumps(results))
    else:
        report("this process", results)


if __name__ == "__main__":
    main()
