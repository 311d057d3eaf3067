"""The shop-writer contract: hybrid-search attached to a shop's own index never overwrites the shop's writes.

On each engine, :class:`~shop_support.ShopWriter` (the shop's own code, plain HTTP) holds the 199 Luma products in
its index (its names, its analyzers, ``"dynamic": "strict"``, no k-NN setting). The layer plans the attachment
(which changes nothing), applies it, and backfills the vectors through a real Celery worker (its own queue,
the engine under test given to it through ``HYBRID_SEARCH_ENGINE`` / ``HYBRID_SEARCH_ENGINE_URL``). Then, while
a second run is embedding, the shop goes on writing: full overwrites (which drop the ``hs_`` fields), partial
updates of a price and of a title, deletes and inserts; the shop's last word is kept in :class:`ShopRecord`.
After a ``sync`` the index must hold:

- every shop field of every document exactly as the shop last wrote it (the ``_source`` without the ``hs_``
  fields, serialised, equals what the shop sent, key order included);
- no deleted document (none brought back by a late conditional write);
- current vectors on every surviving document (``hs_content_hash`` is the hash of its current content,
  ``hs_model_version`` the encoders' version, the vectors of the recorded sizes), and nothing re-embedded for a
  price-only update;
- the shop's own lexical ranking when every kNN weight is 0, and hybrid text and photo searches that find the
  right products, showing the shop's current price.

The issue's "done when" sequence also runs through the real CLI (``hybrid-search attach plan/apply``,
``backfill --wait --json``, ``sync --once --wait --json``), on OpenSearch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Worker, luma_folder, luma_products
from engine_support import ENGINES, elasticsearch_url, engine_settings, in_ci
from shop_support import ShopWriter, now, shop_document, write_attach_config

from hybrid_search.catalog.attachment import (
    CONTENT_HASH_FIELD,
    EMBEDDED_AT_FIELD,
    HS_FIELDS,
    HS_PREFIX,
    MODEL_VERSION_FIELD,
    VECTOR_FIELDS,
    AttachConfig,
    content_hash,
    load_attach_config,
    model_version,
)
from hybrid_search.encoders.roles import configured_encoders
from hybrid_search.engine import SearchEngine, create_engine
from hybrid_search.errors import HybridSearchError
from hybrid_search.ingest.attached import recorded_attachment
from hybrid_search.ingest.backfill import BackfillResult, backfill
from hybrid_search.ingest.enqueue import Job
from hybrid_search.ingest.jobs import wait_for_job
from hybrid_search.ingest.sync import sync_once
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.search.query import RETRIEVERS, SearchQuery
from hybrid_search.search.service import SearchService
from hybrid_search.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

JOB_TIMEOUT_S = 600
BATCH_SIZE = 4  # small batches: the shop's writes land while the workers are in the middle of the job
# the shop's searches whose lexical ranking must be the layer's too (weights of every kNN retriever at 0)
LEXICAL_QUERIES = ["hoodie", "running short", "jacket with zipper", "yoga", "backpack", "tee"]
LEXICAL_ONLY = {name: (1.0 if name == "bm25" else 0.0) for name in RETRIEVERS}


# ---- the engines and their workers ------------------------------------------------------------------------


@dataclass
class Setup:
    """One engine under test: the settings of this process and the worker that embeds for it."""

    kind: str
    settings: Settings
    env: dict[str, str]
    worker: Worker


def reachable(settings: Settings) -> str | None:
    """None when the engine answers, else why not."""
    try:
        with create_engine(settings) as engine:
            engine.health(wait_for_status="yellow", timeout_s=30)
    except HybridSearchError as exc:
        return str(exc)
    return None


def engine_env(kind: str, settings: Settings, queue: str) -> dict[str, str]:
    """What a child process (a worker, the CLI) needs to use this engine, this queue and the Luma photos."""
    return {
        **os.environ,
        "HYBRID_SEARCH_ENGINE": kind,
        "HYBRID_SEARCH_ENGINE_URL": settings.engine_url,
        "HYBRID_SEARCH_INGEST_QUEUE": queue,
        "HYBRID_SEARCH_INGEST_BATCH_SIZE": str(BATCH_SIZE),
        "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(luma_folder())]),
    }


@pytest.fixture(scope="module", params=ENGINES)
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    kind: str = request.param
    base = engine_settings(kind)
    why = reachable(base)
    if why is not None:
        if kind == "opensearch" or in_ci():
            pytest.fail(
                f"{kind} is not reachable ({why}); start it with `hybrid-search stack up`", pytrace=False
            )
        pytest.skip(f"Elasticsearch is not reachable at {elasticsearch_url()} ({why})")
    queue = f"t-attached-shop-{uuid.uuid4().hex[:8]}"
    env = engine_env(kind, base, queue)
    settings = load_settings(
        engine=kind, engine_url=base.engine_url, ingest_queue=queue, ingest_batch_size=BATCH_SIZE,
        image_roots=[luma_folder()],
    )  # fmt: skip
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{queue}-worker.log"
    worker = Worker(env, log, prefix="t-attached-shop")
    try:
        yield Setup(kind, settings, env, worker)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def encoders(setup: Setup) -> dict[str, Any]:
    return configured_encoders(setup.settings)


# ---- the shop and what it last wrote ----------------------------------------------------------------------


@dataclass
class ShopRecord:
    """The shop's writes, and the shop's own record of what it last wrote to each document."""

    shop: ShopWriter
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def load(self, documents: list[dict[str, Any]]) -> None:
        self.shop.load(documents)
        self.written.update({d["sku"]: dict(d) for d in documents})

    def overwrite(self, sku: str, doc: Mapping[str, Any]) -> None:
        self.shop.overwrite(sku, doc)
        self.written[sku] = dict(doc)

    def update(self, sku: str, fields: Mapping[str, Any]) -> None:
        self.shop.update(sku, fields)
        # a partial update keeps the other fields where they were
        self.written[sku] = {**self.written[sku], **fields}

    def delete(self, sku: str) -> None:
        self.shop.delete(sku)
        self.written.pop(sku)
        self.deleted.add(sku)

    def insert(self, doc: Mapping[str, Any]) -> None:
        self.shop.insert(doc)
        self.written[doc["sku"]] = dict(doc)


def shop_fields(source: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if not k.startswith(HS_PREFIX)}


def layer_fields(source: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if k.startswith(HS_PREFIX)}


@pytest.fixture
def shop(setup: Setup, tmp_path: Path) -> Iterator[ShopRecord]:
    """A new shop index holding the 199 Luma products, written by the shop; deleted afterwards with the layer's
    Redis state of it."""
    writer = ShopWriter(setup.settings.engine_url, f"t-shop-{setup.kind[:2]}-{uuid.uuid4().hex[:10]}")
    writer.create()
    record = ShopRecord(writer)
    try:
        record.load([shop_document(p) for p in luma_products().values()])
        yield record
    finally:
        writer.drop()
        Tracker(connect(setup.settings.redis_url)).clear_dead_letters(writer.index)
        client = Tracker(connect(setup.settings.redis_url)).redis
        for key in client.scan_iter(f"hybrid-search:attach:*:{writer.index}"):
            client.delete(key)


# ---- what the index holds -----------------------------------------------------------------------------------


def index_snapshot(http: httpx.Client, index: str) -> dict[str, Any]:
    """The index as the engine describes it (mapping, settings without its own bookkeeping) and every _source."""
    http.post(f"/{index}/_refresh")
    mapping = http.get(f"/{index}/_mapping").json()
    settings = http.get(f"/{index}/_settings").json()
    sources = http.post(f"/{index}/_search", json={"size": 10_000, "sort": [{"sku": "asc"}]}).json()
    return {
        "mapping": mapping,
        "settings": settings,
        "sources": {h["_id"]: h["_source"] for h in sources["hits"]["hits"]},
    }


def versions(http: httpx.Client, index: str, ids: list[str]) -> dict[str, int]:
    """Each document's ``_version`` (every write to it, the shop's or the layer's, adds one)."""
    body = http.post(f"/{index}/_mget", json={"ids": ids}, params={"_source": "false"})
    return {d["_id"]: int(d["_version"]) for d in body.json()["docs"] if d.get("found")}


def check_shop_fields(record: ShopRecord) -> None:
    """Every shop field of every document is what the shop last wrote; nothing the shop deleted is there."""
    sources = record.shop.sources()
    assert sorted(sources) == sorted(record.written), (
        "brought back: " + str(sorted(set(sources) - set(record.written)))
        + "; lost: " + str(sorted(set(record.written) - set(sources)))
    )  # fmt: skip
    changed = {
        sku: {"stored": shop_fields(src), "written": record.written[sku]}
        for sku, src in sources.items()
        if json.dumps(shop_fields(src)) != json.dumps(record.written[sku])
    }
    assert changed == {}, (
        f"{len(changed)} documents differ from the shop's last write: {list(changed.items())[:3]}"
    )
    for sku in record.deleted:
        assert record.shop.source(sku) is None, f"{sku} was deleted by the shop and came back"


def check_vectors(
    engine: SearchEngine, config: AttachConfig, sources: Mapping[str, Mapping[str, Any]]
) -> None:
    """Every document has current vectors: of its current content, by the recorded encoders, of their sizes."""
    records = engine.vector_records(config.index)
    assert VECTOR_FIELDS["text"] in records and set(records) <= set(VECTOR_FIELDS.values()), records
    version = model_version(records)
    stale = {}
    for sku, source in sources.items():
        problems = []
        if source.get(CONTENT_HASH_FIELD) != content_hash(source, config.schema, config.images):
            problems.append(f"content hash {source.get(CONTENT_HASH_FIELD)!r} is not of its content")
        if source.get(MODEL_VERSION_FIELD) != version:
            problems.append(f"model version {source.get(MODEL_VERSION_FIELD)!r}")
        for name, rec in records.items():
            vector = source.get(name)
            if not isinstance(vector, list) or len(vector) != int(rec["dim"]):
                problems.append(f"{name}: {'missing' if vector is None else f'{len(vector)} values'}")
        if problems:
            stale[sku] = problems
    assert stale == {}, f"{len(stale)} documents without current vectors: {list(stale.items())[:5]}"


def job_of(settings: Settings, result: BackfillResult) -> Job:
    state = Tracker(connect(settings.redis_url)).job(result.job)
    return Job(result.job, result.index, int(state.get("total", 0)), 0, int(state.get("batches", 0)))


def job_done(settings: Settings, job: Job) -> bool:
    return int(Tracker(connect(settings.redis_url)).job(job.id).get("batches_done", 0)) >= job.batches


# ---- searching the attached index --------------------------------------------------------------------------


def search_ids(service: SearchService, index: str, query: SearchQuery) -> list[str]:
    return [hit.id for hit in service.search(query, index=index).hits]


def check_lexical_parity(service: SearchService, record: ShopRecord) -> None:
    """With every kNN weight at 0, the layer ranks as the shop's own query does."""
    index = record.shop.index
    for text in LEXICAL_QUERIES:
        shop_ids = record.shop.shop_search(text, size=10)
        ours = search_ids(service, index, SearchQuery(text=text, size=10, weights=LEXICAL_ONLY, facets=False))
        assert ours == shop_ids, (text, ours, shop_ids)


# ---- the scenario ----------------------------------------------------------------------------------------


def plan_and_apply(
    engine: SearchEngine, settings: Settings, config_path: Path, http: httpx.Client
) -> AttachConfig:
    """``attach plan`` changes nothing; ``attach apply`` adds only ``hs_`` fields and keeps the shop's ``_meta``."""
    from hybrid_search.attach import apply_attachment, plan_attachment

    config = load_attach_config(config_path)
    before = index_snapshot(http, config.index)
    planned = plan_attachment(engine, config, settings)
    assert not planned.refused, planned.render()
    assert index_snapshot(http, config.index) == before, "attach plan changed the index"
    apply_attachment(engine, planned)
    after = index_snapshot(http, config.index)
    assert after["sources"] == before["sources"], "attach apply changed documents"
    old_props = next(iter(before["mapping"].values()))["mappings"]["properties"]
    mappings = next(iter(after["mapping"].values()))["mappings"]
    new_props = mappings["properties"]
    assert {k: v for k, v in new_props.items() if k in old_props} == old_props, (
        "a shop field's mapping changed"
    )
    added = sorted(set(new_props) - set(old_props))
    assert added and all(name in HS_FIELDS for name in added), added
    assert mappings["dynamic"] == "strict"
    meta = mappings["_meta"]
    assert meta["owner"] == "shop-team" and meta["revision"] == 7, meta  # the shop's own _meta is kept
    assert meta["hybrid_search"]["attached"]["index"] == config.index, meta
    assert set(meta["hybrid_search"]["vectors"]) <= set(added), meta
    return recorded_attachment(engine, config.index)


def shop_writes_during(
    setup: Setup, record: ShopRecord, job: Job, products: dict[str, Any], plan: dict[str, list[str]]
) -> dict[str, int]:
    """The shop's second wave of writes (each document written once, by one of 4 threads, as a shop's several
    writers do), made while ``job`` is running; how many landed before it ended."""
    stamp = uuid.uuid4().hex[:6]
    steps: list[tuple[str, str]] = [(kind, sku) for kind, skus in plan.items() for sku in skus]
    # interleave the kinds: each stretch of the job sees every kind of write
    steps.sort(key=lambda step: plan[step[0]].index(step[1]))

    def write(step: tuple[str, str]) -> bool:
        kind, sku = step
        if kind == "overwrite_again":
            doc = shop_document(products[sku])
            doc["body"] = f"{doc['body']} Rewritten by the shop ({stamp})."
            record.overwrite(sku, doc)
        elif kind == "price":
            record.update(sku, {"price_usd": 9.75, "modified": now()})
        elif kind == "rename":
            record.update(sku, {"name": f"{record.written[sku]['name']} Limited Edition", "modified": now()})
        elif kind == "delete":
            record.delete(sku)
        elif kind == "insert":
            source = products[sku]
            doc = shop_document(source)
            doc["sku"] = f"NEW-{sku}"
            doc["name"] = f"Aurora {source.title}"
            record.insert(doc)
        return not job_done(setup.settings, job)

    with ThreadPoolExecutor(4) as pool:
        during = sum(pool.map(write, steps))
    return {"writes": len(steps), "during_the_job": during}


def test_shop_writes_survive_backfill_and_sync(
    setup: Setup, shop: ShopRecord, encoders: dict[str, Any], tmp_path: Path
) -> None:
    settings = setup.settings
    http = shop.shop.http
    products = luma_products()
    skus = sorted(products)
    config_path = write_attach_config(tmp_path, shop.shop.index)
    with create_engine(settings) as engine:
        config = plan_and_apply(engine, settings, config_path, http)

        # nothing embedded yet: found by the shop's BM25 all the same
        service = SearchService(settings, engine, encoders)
        check_lexical_parity(service, shop)

        first = backfill(engine, settings, config, wait=True, timeout_s=JOB_TIMEOUT_S)
        assert (first.scanned, first.queued, first.embedded, first.failed) == (199, 199, 199, 0), (
            first.as_dict()
        )
        assert first.photo_failed == 0 and first.missing == 0, first.as_dict()
        check_shop_fields(shop)
        check_vectors(engine, config, shop.shop.sources())
        embedded = {sku: src[EMBEDDED_AT_FIELD] for sku, src in shop.shop.sources().items()}
        after_first = versions(http, shop.shop.index, skus)

        # a first wave of overwrites (the hs_ fields are gone) gives the second run work to do
        # a first wave of full overwrites (the hs_ fields are gone) gives the second run work to do: 126
        # documents, ~32 batches
        wave1 = [sku for n, sku in enumerate(skus[:189]) if n % 3 != 1]
        overwrites = []
        for sku in wave1:
            doc = shop_document(products[sku])
            doc["body"] = f"{doc['body']} New season."
            overwrites.append(doc)
        shop.load(overwrites)  # the bulk index API: full overwrites
        price_only = skus[1:60:6]  # never overwritten: only their price changes
        plan = {
            "overwrite_again": wave1[0:100:10],
            "price": wave1[1:100:10] + price_only,
            "rename": wave1[2:100:25],
            "delete": wave1[3:100:20] + skus[190::3],
            "insert": skus[5:30:5],
        }
        touched = [sku for kind, group in plan.items() if kind != "insert" for sku in group]
        assert len(touched) == len(set(touched)), "each document gets one write of the second wave"
        second = sync_once(engine, settings, config, wait=False)
        job = job_of(settings, second)
        assert second.queued == len(wave1) and job.batches > 1, second.as_dict()
        writes = shop_writes_during(setup, shop, job, products, plan)
        assert writes["during_the_job"] >= 10, ("the job ended before the shop wrote", writes)
        job_summary = wait_for_job(settings, job, timeout_s=JOB_TIMEOUT_S)
        state = Tracker(connect(settings.redis_url)).job(job.id)
        check_shop_fields(shop)  # no shop write lost while the workers wrote

        # inserted documents have no vectors yet: BM25 finds them
        inserted = [f"NEW-{sku}" for sku in plan["insert"]]
        assert all(CONTENT_HASH_FIELD not in (shop.shop.source(i) or {}) for i in inserted)
        # (an insert copies a product's text but for the word "Aurora": BM25 ranks it first, and the hybrid
        # ranking, where the original also has vectors, keeps it on top)
        aurora = f"Aurora {products[plan['insert'][0]].title}"
        lexical = search_ids(service, shop.shop.index, SearchQuery(text=aurora, weights=LEXICAL_ONLY))
        assert lexical[0] == inserted[0], lexical
        hybrid = search_ids(service, shop.shop.index, SearchQuery(text=aurora))
        assert inserted[0] in hybrid[:3], hybrid

        third = sync_once(engine, settings, config, wait=True, timeout_s=JOB_TIMEOUT_S)
        assert third.failed == 0 and third.photo_failed == 0, third.as_dict()
        time.sleep(2)  # a late write of a worker would land now
        check_shop_fields(shop)
        sources = shop.shop.sources()
        check_vectors(engine, config, sources)

        # a price-only update embeds nothing: the vectors and their time are the first backfill's
        for sku in price_only:
            assert sources[sku][EMBEDDED_AT_FIELD] == embedded[sku], sku
            assert sources[sku]["price_usd"] == 9.75
        # each document the shop never touched was written by the layer once, by the first backfill
        untouched = sorted(
            set(skus) - {s for group in plan.values() for s in group} - set(wave1) - set(price_only)
        )
        now_versions = versions(http, shop.shop.index, untouched)
        assert now_versions == {sku: after_first[sku] for sku in untouched}, (
            "untouched documents were rewritten"
        )
        assert all(v == 2 for v in now_versions.values()), "the shop's load, then one hs_ write"

        # searching: the shop's lexical ranking, hybrid text and photo search, the shop's current price
        check_lexical_parity(service, shop)
        renamed = plan["rename"][0]
        top = search_ids(service, shop.shop.index, SearchQuery(text=shop.written[renamed]["name"], size=5))
        assert renamed in top[:3], (renamed, top)
        priced = price_only[0]
        response = service.search(
            SearchQuery(text=shop.written[priced]["name"], size=5), index=shop.shop.index
        )
        hit_of = {h.id: h for h in response.hits}
        assert priced in hit_of and hit_of[priced].fields["price"] == 9.75, response.hits[:3]
        check_photo_search(service, shop, products)
    print(
        f"\n{setup.kind}: second run {job_summary} conflicts_retried={state.get('conflicts_retried')} "
        f"missing={state.get('missing')}; shop writes {writes}; final sync {third.as_dict()}"
    )


def check_photo_search(service: SearchService, record: ShopRecord, products: dict[str, Any]) -> None:
    """A shopper's photo of a product (another view than the one the shop stores) finds that product."""
    found = 0
    tried = []
    for sku in ("MH01", "WJ05", "24-MB02", "MP01"):
        if sku not in record.written:
            continue
        stored = record.written[sku]["picture"]
        others = [p for p in products[sku].images if p != stored]
        if not others:
            continue
        # the very photo the shop stores: that product first
        same = search_ids(service, record.shop.index, SearchQuery(image=(luma_folder() / stored).read_bytes(),
                                                                  size=5, facets=False))  # fmt: skip
        assert same[:1] == [sku], (sku, same)
        ids = search_ids(service, record.shop.index, SearchQuery(image=(luma_folder() / others[0]).read_bytes(),
                                                                 size=5, facets=False))  # fmt: skip
        tried.append((sku, others[0], ids))
        found += sku in ids
    # another view of the product (its back, another angle, another colour): in the top 5, for most of them
    assert tried and found >= len(tried) - 1, tried


# ---- the "done when", through the real CLI ----------------------------------------------------------


def cli(
    env: Mapping[str, str], *args: str, timeout_s: float = JOB_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "hybrid_search.cli", *args],
        env=dict(env), capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"hybrid-search {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    return done


def test_done_when_through_the_cli(setup: Setup, shop: ShopRecord, tmp_path: Path) -> None:
    if setup.kind != "opensearch":
        pytest.skip("the CLI sequence runs on OpenSearch; the library scenario covers both engines")
    http = shop.shop.http
    config = write_attach_config(tmp_path, shop.shop.index)
    before = index_snapshot(http, shop.shop.index)
    plan = cli(setup.env, "attach", "plan", "--config", str(config))
    assert index_snapshot(http, shop.shop.index) == before, "attach plan changed the index"
    for name in ("hs_text_vector", "hs_content_hash", "kNN: exact"):
        assert name in plan.stdout, (name, plan.stdout)
    cli(setup.env, "attach", "apply", "--config", str(config))
    filled = json.loads(cli(setup.env, "backfill", "--config", str(config), "--wait", "--json").stdout)
    assert (filled["scanned"], filled["embedded"], filled["failed"]) == (199, 199, 0), filled
    check_shop_fields(shop)

    products = luma_products()
    changed = sorted(products)[10:20]
    for sku in changed[:5]:
        doc = shop_document(products[sku])
        doc["body"] = "Rewritten by the shop."
        shop.overwrite(sku, doc)
    for sku in changed[5:]:
        shop.update(sku, {"price_usd": 1.5, "modified": now()})
    shop.delete(changed[0])
    synced = json.loads(cli(setup.env, "sync", "--config", str(config), "--once", "--wait", "--json").stdout)
    assert (synced["queued"], synced["embedded"], synced["failed"]) == (4, 4, 0), synced
    check_shop_fields(shop)
    with create_engine(setup.settings) as engine:
        check_vectors(engine, recorded_attachment(engine, shop.shop.index), shop.shop.sources())
