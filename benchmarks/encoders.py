"""Encoder throughput: MiniLM titles/s by batch size, EfficientNet-Lite0 images/s with and without channels-last.

    python benchmarks/encoders.py                    # this process, with whatever malloc settings it has
    python benchmarks/encoders.py --compare-malloc   # two child runs: glibc defaults vs the tuned variables

Text: ~2000 product titles (the Luma catalogue's names, then Home Depot titles), embedded with
``get_encoder("minilm")`` at each ``--text-batch``; the model is loaded and warmed before timing.
Images: ~200 Luma photos end to end (JPEG file -> ``load_image`` -> preprocessing -> model -> vectors) at
``--image-batch``, with the model in channels-last and in plain NCHW memory format, repeats interleaved.
Decode alone is timed too. Each figure is the median (and best) of ``--repeats`` timed passes.

glibc reads the malloc variables at process start only, which is why ``--compare-malloc`` measures in
child processes: MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000.
Children alternate (default, tuned, default, ... for ``--rounds``) and the best rate of each is compared,
since a shared 2-core machine is often busy with something else; the 1-minute load average is printed.
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
        "best_per_s": items / min(run["seconds"] for run in runs),
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
    from hybrid_search.media.images import load_image

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
        "load_average_1min": os.getloadavg()[0],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"environment": environment()}
    if args.device:
        results["environment"]["device"] = args.device
    if not args.skip_text:
        results["text"] = bench_text(args)
    if not args.skip_images:
        results["images"] = bench_images(args)
    results["environment"]["load_average_1min_after"] = os.getloadavg()[0]
    return results


def report(label: str, results: dict[str, Any]) -> None:
    env = results["environment"]
    print(
        f"== {label}: torch {env['torch']}, {env['threads']} threads on {env['cpus']} CPUs, "
        f"device {env['device']}, malloc tuned: {env['malloc_tuned']}, "
        f"load average {env['load_average_1min']:.1f} -> {env.get('load_average_1min_after', 0.0):.1f}"
    )
    text = results.get("text")
    if text:
        rates = {key: value for key, value in text.items() if key.startswith("batch_")}
        for key, value in rates.items():
            print(
                f"  MiniLM {text['titles']} titles, {key.replace('_', ' ')}: {value['per_s']:7.1f} titles/s "
                f"(best {value['best_per_s']:.1f}) "
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
                f"  {what}, {images['photos']} photos: {value['per_s']:7.1f} images/s "
                f"(best {value['best_per_s']:.1f}) "
                f"({value['seconds']:.2f} s; {value['minor_faults']:.0f} minor faults, "
                f"{value['system_s']:.2f} s system)"
            )
        ratio = images["channels_last"]["per_s"] / images["nchw"]["per_s"]
        print(f"  ratio channels-last / NCHW: {ratio:.2f}x")


def _child(args: argparse.Namespace, tuned: bool) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in MALLOC_TUNING}
    if tuned:
        env.update(MALLOC_TUNING)
    command = [sys.executable, str(Path(__file__).resolve()), "--json", *args.passthrough]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"child run (malloc tuned: {tuned}) failed with exit code {completed.returncode}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _figures(results: dict[str, Any]) -> dict[str, float]:
    """Best rate of each measured figure, keyed ``section/name``."""
    figures: dict[str, float] = {}
    for section in ("text", "images"):
        for key, value in results.get(section, {}).items():
            if isinstance(value, dict) and "best_per_s" in value:
                figures[f"{section}/{key}"] = value["best_per_s"]
    return figures


def compare_malloc(args: argparse.Namespace) -> None:
    """Alternate child processes (default, tuned, default, ...) and compare the best rate of each."""
    best: dict[bool, dict[str, float]] = {False: {}, True: {}}
    for round_number in range(1, args.rounds + 1):
        for tuned in (False, True):
            outcome = _child(args, tuned)
            label = f"round {round_number}, {'tuned' if tuned else 'glibc default'} malloc"
            report(label, outcome)
            for key, rate in _figures(outcome).items():
                best[tuned][key] = max(rate, best[tuned].get(key, 0.0))
    print(f"== best of {args.rounds} round(s): default -> tuned malloc (tuned / default)")
    for key, default_rate in best[False].items():
        tuned_rate = best[True][key]
        unit = "titles/s" if key.startswith("text/") else "images/s"
        print(
            f"  {key:28s} {default_rate:8.1f} -> {tuned_rate:8.1f} {unit}  ({tuned_rate / default_rate:.2f}x)"
        )
    for tuned in (False, True):
        figures = best[tuned]
        if "images/channels_last" in figures and "images/nchw" in figures:
            ratio = figures["images/channels_last"] / figures["images/nchw"]
            print(f"  channels-last / NCHW, {'tuned' if tuned else 'default'} malloc: {ratio:.2f}x")


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
    parser.add_argument("--compare-malloc", action="store_true", help="child runs: default and tuned malloc")
    parser.add_argument("--rounds", type=int, default=1, help="--compare-malloc: alternating rounds (1)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the report")
    args = parser.parse_args(argv)
    raw = list(sys.argv[1:] if argv is None else argv)
    args.passthrough = []
    skip_value = False
    for item in raw:  # the children get every option except the ones that steer the parent
        if skip_value:
            skip_value = False
        elif item in ("--compare-malloc", "--json"):
            continue
        elif item == "--rounds":
            skip_value = True
        elif not item.startswith("--rounds="):
            args.passthrough.append(item)
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
