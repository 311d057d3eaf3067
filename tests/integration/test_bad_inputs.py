"""The bad-input corpus (``tests/corpus``) pushed through the real paths; every input rejected or quarantined.

- **Catalogues**: ``hybrid-search ingest --wait --json`` (a subprocess) reads JSONL and CSV catalogues mixing
  good records with every bad record, photo and photo URL of the corpus; a real ``hybrid-search workers``
  process (Celery, on a queue of its own) embeds and writes them into the real engine through Redis. Every bad
  record must end in the dead-letter store (read back with ``hybrid-search dead-letters --json``) with its
  reason, every good record of the same batches must be indexed, and the worker must still be alive and serve
  the next job.
- **HTTP API**: a real server process (``hybrid-search serve``) gets the corpus's photos on ``POST
  /search/image``, its audio on ``POST /search/voice``, its bodies on ``POST /search`` and ``POST /products``,
  and the photo and URL records through ``POST /products`` (dead letters on ``GET /tasks/{id}``). Each bad
  request is a 4xx JSON error saying what is wrong; the server keeps running and a good request succeeds after.
- **Photo URLs**: loopback, private, link-local / metadata, unspecified, IPv4-mapped and NAT64, decimal, hex,
  octal and short IPv4 forms, ``localhost``, ``file://`` and other schemes. Redirects come from a small HTTP
  server of this test on 127.0.0.2, which the worker's ``HYBRID_SEARCH_IMAGE_URL_ALLOWLIST`` admits as a first
  hop (127.0.0.1 and ``localhost`` stay refused); each of its redirects to a private address must be refused.

Every outcome is written to ``tests/artefacts/corpus/outcomes.json`` and printed as a table at the end.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from api_support import ARTEFACTS, ApiServer, Worker, speak

from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import create_engine, definition_from_settings
from hybrid_search.ingest.queue import make_celery
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"
OUTCOMES_FILE = ARTEFACTS / "corpus" / "outcomes.json"
API_KEY = "bad-inputs-test-key-0123456789abcdef"
BATCH_SIZE = 16


def _load_corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS_DIR / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_corpus"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


mc = _load_corpus()
OUTCOMES: list[dict[str, Any]] = []


def note(
    entry: Any, path: str, expect: Any, outcome: str, reason: str, status: int | None = None
) -> str | None:
    """Record one outcome; returns a line describing the mismatch, or None when it is as expected."""
    ok = outcome == expect.outcome and expect.reason in reason
    if expect.status is not None and status is not None:
        ok = ok and status == expect.status
    OUTCOMES.append({"input": entry.id, "path": path, "expected": expect.outcome, "expected_reason": expect.reason,
                     "outcome": outcome, "status": status, "reason": reason[:240], "ok": ok})  # fmt: skip
    if ok:
        return None
    return (f"{entry.id} via {path}: expected {expect.outcome} {expect.status or ''} {expect.reason!r}, "
            f"got {outcome} {status or ''} {reason[:300]!r}")  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def outcome_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """At the end: the table of every input -> path -> outcome -> reason, printed and written as JSON."""
    OUTCOMES.clear()
    yield
    if not OUTCOMES:
        return
    OUTCOMES_FILE.parent.mkdir(parents=True, exist_ok=True)
    bad = [e for e in mc.ENTRIES if e.bad]
    summary = {
        "inputs": len(mc.ENTRIES),
        "bad_inputs": len(bad),
        "bad_inputs_tried": len({o["input"] for o in OUTCOMES if o["expected"] != "accepted"}),
        "outcomes": len(OUTCOMES),
        "as_expected": sum(o["ok"] for o in OUTCOMES),
        "by_outcome": dict(collections.Counter(o["outcome"] for o in OUTCOMES)),
    }
    rows = ",\n".join(json.dumps(o, ensure_ascii=True) for o in OUTCOMES)  # one outcome a line: diffable
    OUTCOMES_FILE.write_text(f'{{"summary": {json.dumps(summary)},\n"outcomes": [\n{rows}\n]}}\n')
    lines = ["", f"bad-input corpus: {json.dumps(summary)}; table in {OUTCOMES_FILE}",
             f"{'input':<28} {'path':<24} {'outcome':<15} {'ok':<3} reason"]  # fmt: skip
    for o in OUTCOMES:
        outcome = o["outcome"] + (f" {o['status']}" if o["status"] else "")
        reason = re.sub(r"\s+", " ", o["reason"]).encode("ascii", "backslashreplace").decode()[:110]
        lines.append(
            f"{o['input']:<28} {o['path']:<24} {outcome:<15} {'ok' if o['ok'] else 'NO':<3} {reason}"
        )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():  # fixture teardown output is captured otherwise
        for line in lines:
            reporter.write_line(line)


# ---- the corpus on disk and the redirecting server --------------------------------------------------------


class Redirector:
    """An HTTP server on 127.0.0.2 (allow-listed for the worker) that redirects, stalls and lies."""

    def __init__(self, photo: bytes) -> None:
        self.photo = photo
        self.hits: collections.Counter[str] = collections.Counter()
        self.server = ThreadingHTTPServer((mc.REDIRECTOR_HOST, 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{mc.REDIRECTOR_HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                outer.hits[parts.path] += 1
                with contextlib.suppress(
                    BrokenPipeError, ConnectionResetError
                ):  # the client gave up, rightly
                    self._route(parts.path, parse_qs(parts.query))

            def _route(self, path: str, query: dict[str, list[str]]) -> None:
                if path == "/good.jpg":
                    self._send(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(outer.photo))},
                               outer.photo)  # fmt: skip
                elif path == "/redirect":
                    self._send(302, {"Location": query["to"][0], "Content-Length": "0"})
                elif path == "/loop":
                    self._send(302, {"Location": "/loop", "Content-Length": "0"})
                elif path == "/no-location":
                    self._send(302, {"Content-Length": "0"})
                elif path == "/html.jpg":
                    self._send(200, {"Content-Type": "image/jpeg"}, mc.HTML)
                elif path == "/huge.jpg":
                    self._send(200, {"Content-Type": "image/jpeg", "Content-Length": str(10 * 1024**3)})
                elif path == "/endless.jpg":
                    self._send(200, {"Content-Type": "image/jpeg"}, b"\xff\xd8\xff\xe0")
                    for _ in range(1024):  # 64 MB at most, far past the 8 MB limit
                        self.wfile.write(b"\x00" * 65536)
                elif path == "/slow.jpg":
                    time.sleep(4 * mc.FETCH_TIMEOUT_S)
                    self._send(200, {"Content-Type": "image/jpeg"}, outer.photo)
                else:
                    self._send(404, {"Content-Type": "text/plain"}, b"not here")

        return Handler

    def __enter__(self) -> Redirector:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def redirector() -> Iterator[Redirector]:
    with Redirector(mc.Context().image(size=(224, 224))) as server:
        yield server


@pytest.fixture(scope="module")
def ctx(redirector: Redirector) -> Any:
    return mc.Context(redirector=redirector.url)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, ctx: Any) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, mc.write_files(folder, ctx)


def fill(ref: str, ctx: Any) -> str:
    return ref.replace("{redirector}", ctx.redirector)


def good_records(ctx: Any) -> list[dict[str, Any]]:
    return [json.loads(fill(json.dumps(r), ctx)) for r in mc.GOOD_RECORDS]


def photo_record(entry: Any, ctx: Any) -> dict[str, Any]:
    """The product whose main photo is ``entry`` (a corpus file, a local path or a URL)."""
    ref = f"photos/{entry.id}.jpg" if entry.kind == "photo" else fill(entry.ref, ctx)
    return {"id": entry.id, "title": f"Product {entry.id}", "images": [ref]}


# ---- the worker, the index, the command line --------------------------------------------------------------


@pytest.fixture(scope="module")
def env(corpus: tuple[Path, dict[str, Path]]) -> dict[str, str]:
    """The environment of this module's worker, commands and server: private queue, limits, allow-list."""
    folder, _files = corpus
    return {
        **os.environ,
        "HYBRID_SEARCH_INGEST_QUEUE": f"test-bad-inputs-{uuid.uuid4().hex[:8]}",
        "HYBRID_SEARCH_INDEX_ALIAS": f"test-bad-inputs-{uuid.uuid4().hex[:8]}",
        "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(folder)]),
        "HYBRID_SEARCH_IMAGE_URL_ALLOWLIST": json.dumps([f"{mc.REDIRECTOR_HOST}/32"]),
        "HYBRID_SEARCH_IMAGE_FETCH_TIMEOUT_S": str(mc.FETCH_TIMEOUT_S),
        "HYBRID_SEARCH_IMAGE_MAX_BYTES": str(mc.IMAGE_MAX_BYTES),
        "HYBRID_SEARCH_API_MAX_UPLOAD_BYTES": str(mc.UPLOAD_MAX_BYTES),
        "HYBRID_SEARCH_API_KEYS": API_KEY,
    }


@pytest.fixture(scope="module")
def worker(env: dict[str, str], settings: Settings) -> Iterator[Worker]:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{env['HYBRID_SEARCH_INGEST_QUEUE']}-worker.log"
    started = Worker(env, log, prefix="bad-inputs")
    yield started
    started.stop()
    queue = env["HYBRID_SEARCH_INGEST_QUEUE"]  # what Celery left in Redis for this queue of ours
    connect(settings.redis_url).delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


@pytest.fixture(scope="module")
def alias(env: dict[str, str], settings: Settings) -> Iterator[str]:
    name = env["HYBRID_SEARCH_INDEX_ALIAS"]
    with create_engine(settings) as engine:
        engine.create_index(name, definition_from_settings(settings, encoder_records(settings)))
        yield name
        for index in engine.versions(name).values():
            engine.delete_index(index)
    Tracker(connect(settings.redis_url)).clear_dead_letters(name)


def cli(env: dict[str, str], *args: str, timeout: float = 540) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hybrid_search.cli", *args], env=env, capture_output=True,
                          text=True, errors="replace", timeout=timeout)  # fmt: skip


def ingest(env: dict[str, str], path: Path, alias: str) -> dict[str, Any]:
    """``hybrid-search ingest PATH --wait --json``: the summary, with the job's dead letters added."""
    done = cli(
        env, "ingest", str(path), "--index", alias, "--wait", "--json", "--batch-size", str(BATCH_SIZE)
    )
    assert done.returncode == 0, f"ingest {path.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    summary: dict[str, Any] = json.loads(done.stdout)
    letters = cli(env, "dead-letters", "--index", alias, "--json", "--limit", "10000")
    assert letters.returncode == 0, letters.stderr
    summary["letters"] = [
        d for d in json.loads(letters.stdout)["dead_letters"] if d.get("job") == summary["job"]
    ]
    return summary


def by_line(letters: list[dict[str, Any]], name: str) -> dict[int, dict[str, Any]]:
    """Dead letters by catalogue line: ``name:N`` (refused while reading) or ``name#N`` (by the worker)."""
    out = {}
    for letter in letters:
        match = re.fullmatch(re.escape(name) + r"[:#](\d+)", str(letter.get("source")))
        if match:
            out[int(match.group(1))] = letter
    return out


def stored(settings: Settings, alias: str, ids: list[str], fields: list[str]) -> dict[str, dict[str, Any]]:
    with create_engine(settings) as engine:
        engine.refresh(alias)
        return engine.get_fields(alias, ids, fields)  # type: ignore[no-any-return]


# ---- the corpus itself ------------------------------------------------------------------------------------


def test_manifest_matches_the_generator_and_has_enough_bad_inputs() -> None:
    committed = json.loads((CORPUS_DIR / "manifest.json").read_text())
    assert committed == json.loads(json.dumps(mc.manifest())), (
        "run: python tests/corpus/make_corpus.py --manifest"
    )
    ids = [e.id for e in mc.ENTRIES]
    assert len(ids) == len(set(ids)), [i for i, n in collections.Counter(ids).items() if n > 1]
    assert committed["bad_inputs"] >= 40
    for entry in mc.ENTRIES:
        assert entry.expect and all(
            e.outcome in ("quarantined", "rejected", "accepted") for e in entry.expect
        )
    assert all(p.stat().st_size <= 100_000 for p in CORPUS_DIR.iterdir() if p.is_file())


# ---- (a) catalogues through `hybrid-search ingest` and the worker ---------------------------------------


@pytest.fixture(scope="module")
def jsonl_job(
    env: dict[str, str], worker: Worker, alias: str, corpus: tuple[Path, dict[str, Path]], ctx: Any
) -> tuple[dict[str, Any], dict[int, Any]]:
    """The corpus's records, photos and photo URLs in one JSONL catalogue, good records spread among them."""
    folder, _files = corpus
    bad = [e for e in mc.ENTRIES if e.kind in ("photo", "photo-ref", "url", "record")]
    good = good_records(ctx)
    lines: list[tuple[Any, bytes]] = [(None, json.dumps(good[0]).encode())]
    for n, entry in enumerate(bad):
        line = entry.build(ctx) if entry.kind == "record" else json.dumps(photo_record(entry, ctx)).encode()
        lines.append((entry, line))
        if n % 12 == 11 and len(good) > 2:
            lines.append((None, json.dumps(good.pop(1)).encode()))
    lines.extend((None, json.dumps(g).encode()) for g in good[1:])
    path = folder / "corpus.jsonl"
    path.write_bytes(b"\n".join(line for _e, line in lines) + b"\n")
    return ingest(env, path, alias), {n: e for n, (e, _line) in enumerate(lines, 1) if e is not None}


def test_jsonl_catalogue_bad_records_are_dead_lettered_and_the_rest_indexed(
    jsonl_job: tuple[dict[str, Any], dict[int, Any]],
    settings: Settings,
    alias: str,
    redirector: Redirector,
    ctx: Any,
) -> None:
    summary, entries = jsonl_job
    letters = by_line(summary["letters"], "corpus.jsonl")
    problems = []
    for line, entry in entries.items():
        expect = next(e for e in entry.expect if e.path == "ingest")
        letter = letters.get(line)
        outcome, reason = ("quarantined", str(letter["reason"])) if letter else ("accepted", "")
        if letter and entry.kind != "record" and letter.get("id") != entry.id:
            reason = f"dead letter names {letter.get('id')!r}, not {entry.id!r}: {reason}"
        path = "ingest: reader" if entry.kind == "record" else "ingest: worker"
        problems.append(note(entry, path, expect, outcome, reason))
    assert [p for p in problems if p] == []

    good = good_records(ctx)
    accepted = [e.id for e in mc.ACCEPTED_RECORDS]
    quarantined = sum(1 for e in entries.values() if e.expect[0].outcome == "quarantined")
    assert summary["indexed"] == len(good) + len(accepted)
    assert summary["dead_lettered"] == quarantined == len(summary["letters"])
    docs = stored(settings, alias, [g["id"] for g in good] + accepted, ["id", "title", "image_hash"])
    assert sorted(docs) == sorted([g["id"] for g in good] + accepted)
    assert docs["good-plain"]["title"] == "Storm rain jacket"  # not the impostor with its id
    for with_photo in ("good-photo", "good-png", "good-url-allowed", "good-redirect-allowed"):
        assert docs[with_photo]["image_hash"], with_photo  # photos behind the allow-listed host were read
    assert docs["rec-title-with-controls"]["title"] == "Trail jacket red"
    assert docs["rec-title-with-html"]["title"] == "alert(1) Rain & wind shell"
    # the refused redirects were followed one hop (the allow-listed server), then refused: never fetched
    assert redirector.hits["/redirect"] >= sum(1 for e in mc.URLS if e.id.startswith("redirect-to-"))
    assert redirector.hits["/loop"] == 4  # the first request and 3 redirects, then "too many redirects"


def test_csv_catalogue_bad_rows_are_dead_lettered_and_the_rest_indexed(
    env: dict[str, str], worker: Worker, alias: str, corpus: tuple[Path, dict[str, Path]], settings: Settings
) -> None:
    folder, _files = corpus
    rows = mc.entries("csv-row")
    path = folder / "rows.csv"
    path.write_bytes(
        mc.CSV_HEADER + b"\r\n".join([*mc.CSV_GOOD, *[e.build(mc.Context()) for e in rows]]) + b"\r\n"
    )
    summary = ingest(env, path, alias)
    letters = by_line(summary["letters"], "rows.csv")
    problems = []
    for line, entry in enumerate(rows, 2 + len(mc.CSV_GOOD)):
        letter = letters.get(line)
        outcome, reason = ("quarantined", str(letter["reason"])) if letter else ("accepted", "")
        problems.append(note(entry, "ingest: reader", entry.expect[0], outcome, reason))
    assert [p for p in problems if p] == []
    assert (summary["indexed"], summary["dead_lettered"]) == (2, len(rows))
    docs = stored(settings, alias, ["csv-good-1", "csv-good-2"], ["id", "title", "attributes"])
    assert docs["csv-good-1"]["title"] == "Merino wool hiking socks"  # not the duplicate row's title
    assert docs["csv-good-2"]["attributes"] == ["colour=Natural"]


def test_whole_catalogue_files_are_refused_or_quarantined(
    env: dict[str, str], worker: Worker, alias: str, corpus: tuple[Path, dict[str, Path]], settings: Settings
) -> None:
    _folder, files = corpus
    problems = []
    for entry in [*mc.CATALOGUES, *mc.ACCEPTED_CATALOGUES]:
        expect = entry.expect[0]
        if expect.path == "cli":
            done = cli(env, "ingest", str(files[entry.id]), "--index", alias, "--wait", "--json", timeout=120)
            if "Traceback" in done.stderr:
                outcome, reason = "crashed", done.stderr[-400:]
            else:
                outcome = "rejected" if done.returncode == 1 else f"exit {done.returncode}"
                reason = done.stderr.strip()
            problems.append(note(entry, "cli: ingest", expect, outcome, reason, done.returncode))
            continue
        summary = ingest(env, files[entry.id], alias)
        if expect.outcome == "accepted":
            ok = (summary["indexed"], summary["dead_lettered"]) == (1, 0)
            reason = f"read {summary['read']}, indexed {summary['indexed']}, dead-lettered {summary['dead_lettered']}"
            problems.append(note(entry, "ingest", expect, "accepted" if ok else "not indexed", reason))
            continue
        reasons = sorted({str(d["reason"]) for d in summary["letters"]})
        everything = summary["indexed"] == 0 and summary["dead_lettered"] == summary["read"] >= 1
        outcome = "quarantined" if everything and all(expect.reason in r for r in reasons) else "mixed"
        problems.append(note(entry, "ingest: reader", expect, outcome, "; ".join(reasons)))
    assert [p for p in problems if p] == []
    docs = stored(settings, alias, ["bom-csv-1", "bom-jsonl-1"], ["id", "title"])
    assert (
        docs["bom-csv-1"]["title"] == "Excel export row" and docs["bom-jsonl-1"]["title"] == "Notepad export"
    )


# ---- (b) the HTTP API -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(
    env: dict[str, str], worker: Worker, alias: str, jsonl_job: Any, corpus: tuple[Path, dict[str, Path]]
) -> Iterator[ApiServer]:
    """``hybrid-search serve`` on this module's alias (the good records are in) and queue."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{env['HYBRID_SEARCH_INGEST_QUEUE']}-server.log"
    server = ApiServer(env, log).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=120.0, headers={"X-API-Key": API_KEY}) as client:
        yield client


def refusal(response: httpx.Response) -> tuple[str, str]:
    """(outcome, message) of a response: ``rejected`` only for a 4xx in the common JSON error shape."""
    try:
        error = response.json()["error"]
        message = str(error["message"])
        shaped = error["status"] == response.status_code and isinstance(error["code"], str)
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} (not the JSON error shape)", response.text[:300]
    if 400 <= response.status_code < 500 and shaped:
        return "rejected", message
    return f"HTTP {response.status_code}", message


def outcome_of(response: httpx.Response) -> tuple[str, str]:
    if response.status_code in (200, 202):
        return "accepted", ""
    return refusal(response)


def alive(api: ApiServer) -> None:
    assert api.process is not None and api.process.poll() is None, (
        f"the server died: {api.log.read_text()[-3000:]}"
    )


def test_bad_photos_to_search_image(
    http: httpx.Client, api: ApiServer, corpus: tuple[Path, dict[str, Path]]
) -> None:
    folder, files = corpus
    problems = []
    for entry in mc.entries("photo"):
        expect = next(e for e in entry.expect if e.path == "api-image")
        response = http.post("/search/image", files={"image": (f"{entry.id}.jpg", files[entry.id].read_bytes(),
                                                               "image/jpeg")})  # fmt: skip
        problems.append(
            note(entry, "POST /search/image", expect, *outcome_of(response), response.status_code)
        )
        alive(api)
    assert [p for p in problems if p] == []
    good = http.post("/search/image", files={"image": ("good.jpg", (folder / "photos/good.jpg").read_bytes())},
                     data={"text": "trail shoe"})  # fmt: skip
    assert good.status_code == 200 and good.json()["hits"], good.text


@pytest.mark.voice
def test_bad_audio_to_search_voice(
    http: httpx.Client, api: ApiServer, corpus: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    _folder, files = corpus
    problems = []
    for entry in mc.entries("audio"):
        response = http.post("/search/voice", files={"audio": (f"{entry.id}.wav", files[entry.id].read_bytes(),
                                                               "audio/wav")})  # fmt: skip
        problems.append(note(entry, "POST /search/voice", entry.expect[0], *outcome_of(response),
                             response.status_code))  # fmt: skip
        alive(api)
    assert [p for p in problems if p] == []
    spoken = speak("rain jacket", tmp_path / "good.wav").read_bytes()
    good = http.post("/search/voice", files={"audio": ("good.wav", spoken, "audio/wav")})
    assert good.status_code == 200 and good.json()["transcript"]["text"], good.text


def test_bad_search_bodies(http: httpx.Client, api: ApiServer) -> None:
    problems = []
    for entry in mc.entries("search-body"):
        response = http.post("/search", content=entry.build(mc.Context()),
                             headers={"content-type": entry.content_type})  # fmt: skip
        problems.append(
            note(entry, "POST /search", entry.expect[0], *outcome_of(response), response.status_code)
        )
        alive(api)
    assert [p for p in problems if p] == []
    good = http.post("/search", json={"text": "storm rain jacket", "size": 3})
    assert good.status_code == 200 and good.json()["hits"][0]["id"] == "good-plain", good.text


def test_bad_products_bodies_and_records(http: httpx.Client, api: ApiServer, ctx: Any) -> None:
    """Each bad record posted next to a good one: the request is refused, naming the record and the problem."""
    good = json.dumps(good_records(ctx)[0]).encode()  # good-plain as ingested: a duplicate of it is refused
    problems = []
    for entry in [*mc.entries("products-body"), *mc.entries("record")]:
        expect = next((e for e in entry.expect if e.path == "api-products"), None)
        if expect is None:  # the 17 MB line is over the request size limit; "accepted" records are cleaned
            continue
        body = (
            entry.build(ctx)
            if entry.kind == "products-body"
            else b'{"products": [' + good + b", " + entry.build(ctx) + b"]}"
        )
        response = http.post("/products", content=body, headers={"content-type": entry.content_type})
        problems.append(note(entry, "POST /products", expect, *outcome_of(response), response.status_code))
        alive(api)
    assert [p for p in problems if p] == []
    accepted = http.post("/products", json={"products": [{"id": "api-good", "title": "Packable down vest"}]})
    assert accepted.status_code == 202, accepted.text


def test_bad_photos_and_urls_through_post_products_are_dead_lettered(
    http: httpx.Client, api: ApiServer, ctx: Any, settings: Settings, alias: str
) -> None:
    """Valid records whose photos are hostile: accepted (202), then dead-lettered by the worker, on the task."""
    entries = [e for e in mc.ENTRIES if e.kind in ("photo", "photo-ref", "url")]
    products = [*good_records(ctx), *[photo_record(e, ctx) for e in entries]]
    response = http.post("/products", json={"products": products})
    assert response.status_code == 202, response.text
    task_url = response.json()["status_url"]
    deadline = time.monotonic() + 300
    while (task := http.get(task_url).json())["status"] != "done":
        assert time.monotonic() < deadline, task
        time.sleep(1)
    letters = {d["id"]: d for d in task["dead_letters"]}
    problems = []
    for entry in entries:
        expect = next(e for e in entry.expect if e.path == "ingest")
        letter = letters.get(entry.id)
        outcome, reason = ("quarantined", str(letter["reason"])) if letter else ("accepted", "")
        problems.append(note(entry, "POST /products: worker", expect, outcome, reason))
    assert [p for p in problems if p] == []
    assert (task["indexed"], task["failed"]) == (len(mc.GOOD_RECORDS), len(entries))
    alive(api)


# ---- the worker survived all of it ------------------------------------------------------------------------


def test_the_worker_survived_and_serves_the_next_job(
    env: dict[str, str],
    worker: Worker,
    alias: str,
    corpus: tuple[Path, dict[str, Path]],
    settings: Settings,
    jsonl_job: Any,
) -> None:
    assert worker.process.poll() is None, worker.text()[-3000:]
    app = make_celery(settings)
    try:
        node = worker.node.replace("%h", socket.gethostname())
        assert app.control.ping(destination=[node], timeout=10.0), f"{node} does not answer"
    finally:
        app.close()
    folder, _files = corpus
    path = folder / "next.jsonl"
    path.write_text(json.dumps({"id": "next-1", "title": "Next job socks"}) + "\n"
                    + json.dumps({"id": "next-2", "title": "Next job gloves", "images": ["photos/good.jpg"]}) + "\n")  # fmt: skip
    summary = ingest(env, path, alias)
    assert (summary["indexed"], summary["dead_lettered"]) == (2, 0)
    assert sorted(stored(settings, alias, ["next-1", "next-2"], ["id"])) == ["next-1", "next-2"]
    log = worker.text()
    for sign in ("Traceback", "WorkerLostError", "raised unexpected", "exited with"):
        assert sign not in log, f"the worker log has {sign!r}:\n{log[-4000:]}"
