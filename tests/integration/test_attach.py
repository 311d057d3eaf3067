"""``attach plan|apply|detach|reindex`` on a shop's own index, on both engines.

The shop's index (:mod:`shop_support`: its names, ``"dynamic": "strict"``, ``_meta`` ``{"owner": "shop-team"}``,
no k-NN setting, the 199 Luma products) is read over plain HTTP before and after each step: a plan changes
nothing; apply adds only ``hs_`` fields, keeps the shop's ``_meta`` and every ``_source`` byte for byte, and a
second apply changes nothing; detach forgets the attachment (``--strip`` also its values); on OpenSearch,
reindex puts the shop's name, as an alias, over a k-NN copy holding every document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_support import engine_settings
from shop_support import SHOP_MAPPING, ShopWriter, shop_index, write_attach_config

from hybrid_search.attach import apply_attachment, detach, plan_attachment, reindex_attached
from hybrid_search.catalog.attachment import (
    CONTENT_HASH_FIELD,
    EMBEDDED_AT_FIELD,
    HS_FIELDS,
    HS_PREFIX,
    MODEL_VERSION_FIELD,
    AttachConfig,
    load_attach_config,
)
from hybrid_search.encoders.roles import configured_encoders
from hybrid_search.engine import ConditionalUpdate, EncoderRef, SearchEngine
from hybrid_search.errors import ValidationError
from hybrid_search.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def encoders() -> dict[str, Any]:
    """The configured encoders (names, versions, dims: no model loads for a plan)."""
    return configured_encoders(engine_settings("opensearch"))


@pytest.fixture
def settings(engine: SearchEngine) -> Settings:
    return engine_settings(engine.kind)


@pytest.fixture
def shop(engine: SearchEngine, settings: Settings) -> Iterator[ShopWriter]:
    with shop_index(settings.engine_url, prefix=f"t-attach-{engine.kind[:2]}") as writer:
        yield writer
        # a reindexed shop index is an alias over a copy: delete the copies too
        for name in writer.http.get(f"/{writer.index}-hs-knn-*").json():
            writer.http.delete(f"/{name}")


def snapshot(shop: ShopWriter) -> dict[str, Any]:
    """The index as the engine reports it (mapping, settings, aliases) and every ``_source`` as raw JSON text."""
    shop.http.post(f"/{shop.index}/_refresh")
    index = shop.http.get(f"/{shop.index}").json()
    body = {"size": 1000, "query": {"match_all": {}}, "sort": [{"sku": "asc"}]}
    hits = shop.http.post(f"/{shop.index}/_search", json=body).json()["hits"]["hits"]
    return {"index": index, "sources": {h["_id"]: json.dumps(h["_source"]) for h in hits}}


def mappings(shop: ShopWriter) -> dict[str, Any]:
    return dict(next(iter(shop.http.get(f"/{shop.index}/_mapping").json().values()))["mappings"])


def config_of(tmp_path: Path, shop: ShopWriter, **replace: str) -> AttachConfig:
    path = write_attach_config(tmp_path, shop.index)
    text = path.read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return load_attach_config(path)


def other_index(url: str, mapping: dict[str, Any]) -> ShopWriter:
    writer = ShopWriter(url, f"t-attach-other-{uuid.uuid4().hex[:10]}")
    writer.create(mapping)
    return writer


# ---- plan -------------------------------------------------------------------------------------------------


def test_plan_changes_nothing_and_says_what_apply_adds(
    engine: SearchEngine, settings: Settings, shop: ShopWriter, encoders: dict[str, Any], tmp_path: Path
) -> None:
    config = load_attach_config(write_attach_config(tmp_path, shop.index))
    before = snapshot(shop)
    plan = plan_attachment(engine, config, settings, encoders)
    assert snapshot(shop) == before
    assert plan.ok, plan.render()
    assert plan.documents == 199 and plan.concrete == shop.index and not plan.attached
    assert set(plan.fields) == set(HS_FIELDS) and set(plan.additions) == set(HS_FIELDS)
    dims = {name: rec["dim"] for name, rec in plan.records.items()}
    assert dims == {
        "hs_text_vector": encoders["text"].dim,
        "hs_image_vector": encoders["image"].dim,
        "hs_colour_vector": encoders["colour"].dim,
        "hs_fused_vector": encoders["text"].dim + encoders["image"].dim,
    }
    assert plan.records["hs_text_vector"]["encoder"] == encoders["text"].name
    assert plan.config.schema.keyword_field("title") == "name.raw"  # found in the mapping
    assert plan.keywords_found == {"name": "name.raw"}
    text = plan.render()
    if engine.kind == "opensearch":
        assert plan.config.knn == "exact" and not plan.knn.approximate
        assert plan.knn.cost["hs_text_vector"] == 199 * encoders["text"].dim
        assert f"199 documents x {encoders['text'].dim} dims" in text
        assert "hybrid-search attach reindex" in text
        assert "method" not in plan.fields["hs_text_vector"]  # an index without index.knn refuses a method
    else:
        assert plan.config.knn == "approximate" and plan.knn.cost == {}
    assert "REFUSED" not in text and "ready:" in text
    data = json.loads(json.dumps(plan.as_dict()))
    assert (
        data["ok"] and data["config"]["knn"] == plan.config.knn and data["additions"] == list(plan.additions)
    )


def test_plan_refuses_source_disabled_and_missing_fields(
    engine: SearchEngine, settings: Settings, encoders: dict[str, Any], tmp_path: Path
) -> None:
    mapping = json.loads(json.dumps(SHOP_MAPPING))
    mapping["mappings"]["_source"] = {"enabled": False}
    mapping["mappings"]["properties"]["hs_content_hash"] = {"type": "text"}
    writer = other_index(settings.engine_url, mapping)
    try:
        config = config_of(tmp_path, writer, **{'description = "body"': 'description = "summary"'})
        before = snapshot(writer)
        plan = plan_attachment(engine, config, settings, encoders)
        assert snapshot(writer) == before
        assert not plan.ok
        text = "\n".join(plan.refused)
        assert "_source is disabled" in text
        assert "fields.description: 'summary' is not in the index's mapping" in text
        assert "hs_content_hash exists with another mapping (text" in text
        assert "REFUSED:" in plan.render() and "refused: fix the above" in plan.render()
        with pytest.raises(ValidationError, match="_source is disabled"):
            apply_attachment(engine, plan)
        assert snapshot(writer) == before
    finally:
        writer.drop()


def test_plan_refuses_fields_left_out_of_source_and_the_layers_own_index(
    engine: SearchEngine, settings: Settings, encoders: dict[str, Any], tmp_path: Path
) -> None:
    mapping = json.loads(json.dumps(SHOP_MAPPING))
    mapping["mappings"]["_source"] = {"excludes": ["body", "hs_*"]}
    mapping["mappings"]["_meta"] = {"hybrid_search": {"vectors": {"text_vector": {"encoder": "x", "dim": 3}}}}
    writer = other_index(settings.engine_url, mapping)
    try:
        plan = plan_attachment(engine, config_of(tmp_path, writer), settings, encoders)
        text = "\n".join(plan.refused)
        assert "fields.description: 'body' is left out of _source" in text
        assert "hs_content_hash would be left out of _source" in text
        assert "the layer's own index" in text
    finally:
        writer.drop()


def test_plan_warns_and_notes_what_works_differently(
    engine: SearchEngine, settings: Settings, shop: ShopWriter, encoders: dict[str, Any], tmp_path: Path
) -> None:
    config = config_of(
        tmp_path,
        shop,
        **{
            'updated_at = "modified"\n': 'brand = "body"\n',  # a text field with no keyword sub-field
            'image = "picture"\n': "",
            'id = "sku"\n': "",
            'fields = ["name^3", "body"]': 'fields = ["name^3", "body", "tagline^2"]',
        },
    )
    plan = plan_attachment(engine, config, settings, encoders)
    assert plan.ok, plan.render()
    warnings, notes = "\n".join(plan.warnings), "\n".join(plan.notes)
    assert "no updated_at role: sync" in warnings and "content hashes over the whole index" in warnings
    assert "fields.brand: 'body' is a text field with no keyword sub-field" in warnings
    assert "lexical.fields: ['tagline^2'] not in the index's mapping" in warnings
    assert "no id role" in notes and "_shard_doc" in notes
    assert "no image role: no photo search" in notes
    assert set(plan.records) == {"hs_text_vector"}  # nothing to embed photos from


# ---- apply ------------------------------------------------------------------------------------------------


def test_apply_adds_only_hs_fields_keeps_the_shop_and_is_idempotent(
    engine: SearchEngine, settings: Settings, shop: ShopWriter, encoders: dict[str, Any], tmp_path: Path
) -> None:
    config = load_attach_config(write_attach_config(tmp_path, shop.index))
    before = snapshot(shop)
    old = mappings(shop)
    result = apply_attachment(engine, plan_attachment(engine, config, settings, encoders))
    assert result.changed and set(result.added) == set(HS_FIELDS) and result.meta_written
    after = snapshot(shop)
    assert after["sources"] == before["sources"]  # every _source byte for byte
    new = mappings(shop)
    assert {k: v for k, v in new["properties"].items() if k in old["properties"]} == old["properties"]
    assert set(new["properties"]) - set(old["properties"]) == set(HS_FIELDS)
    assert new["dynamic"] == "strict"
    meta = new["_meta"]
    assert meta["owner"] == "shop-team" and meta["revision"] == 7
    block = meta["hybrid_search"]
    assert block["attached"]["index"] == shop.index and block["attached"]["knn"] in ("exact", "approximate")
    assert block["attached"]["keywords"] == {"name": "name.raw"} and block["attached"]["attached_at"]
    assert block["vectors"]["hs_text_vector"]["dim"] == encoders["text"].dim
    assert engine.vector_records(shop.index) == block["vectors"]
    assert (
        AttachConfig.from_meta(engine.attachment_meta(shop.index) or {}).schema.value_field("title") == "name"
    )

    again = plan_attachment(engine, config, settings, encoders)
    assert again.ok and again.attached and again.additions == ()
    second = apply_attachment(engine, again)
    assert not second.changed and set(second.present) == set(HS_FIELDS)
    assert "nothing changed" in second.render()
    assert snapshot(shop) == after  # mapping, _meta (attached_at included) and documents as they were


# ---- detach -----------------------------------------------------------------------------------------------


def write_hs_values(
    engine: SearchEngine, shop: ShopWriter, ids: list[str], dim: int, ref: EncoderRef
) -> None:
    docs = engine.get_versioned(shop.index, ids)
    updates = [
        ConditionalUpdate(
            doc_id,
            docs[doc_id].seq_no,
            docs[doc_id].primary_term,
            {
                "hs_text_vector": [1.0] + [0.0] * (dim - 1),
                CONTENT_HASH_FIELD: "abc",
                MODEL_VERSION_FIELD: "v",
                EMBEDDED_AT_FIELD: "2025-01-01T00:00:00Z",
            },
        )
        for doc_id in ids
    ]
    result = engine.update_if_unchanged(
        shop.index, updates, vector_sources={"hs_text_vector": ref}, refresh=True
    )
    assert sorted(result.written) == sorted(ids), result


def test_detach_removes_the_attachment_and_strip_removes_the_hs_values(
    engine: SearchEngine, settings: Settings, shop: ShopWriter, encoders: dict[str, Any], tmp_path: Path
) -> None:
    config = load_attach_config(write_attach_config(tmp_path, shop.index))
    before = snapshot(shop)["sources"]
    plan = plan_attachment(engine, config, settings, encoders)
    apply_attachment(engine, plan)
    ids = sorted(before)[:5]
    rec = plan.records["hs_text_vector"]
    write_hs_values(engine, shop, ids, rec["dim"], EncoderRef(rec["encoder"], rec["version"]))
    assert CONTENT_HASH_FIELD in (shop.source(ids[0]) or {})

    result = detach(engine, config)
    assert result.meta_removed and result.method is None
    meta = mappings(shop)["_meta"]
    assert meta["owner"] == "shop-team" and "attached" not in meta["hybrid_search"]
    assert "vectors" not in meta["hybrid_search"]
    assert engine.attachment_meta(shop.index) is None
    assert CONTENT_HASH_FIELD in (shop.source(ids[0]) or {})  # without --strip the values stay

    stripped = detach(engine, config, strip=True)
    assert not stripped.meta_removed and stripped.stripped == len(ids) and stripped.left == 0
    sources = snapshot(shop)["sources"]
    for doc_id in ids:
        source = json.loads(sources[doc_id])
        shop_part = {k: v for k, v in source.items() if not k.startswith(HS_PREFIX)}
        assert shop_part == json.loads(before[doc_id])
        if engine.kind == "opensearch":  # painless: the keys are gone (its map does not keep the key order)
            assert stripped.method == "removed" and source == shop_part
        else:  # the local Elasticsearch node has no painless: the keys remain, null
            assert stripped.method == "nulled" and "null values" in stripped.render()
            assert json.dumps(shop_part) == before[doc_id]  # a partial update keeps the order too
            assert {k: v for k, v in source.items() if k.startswith(HS_PREFIX)} == dict.fromkeys(HS_FIELDS)
    assert {k: v for k, v in sources.items() if k not in ids} == {
        k: v for k, v in before.items() if k not in ids
    }


# ---- reindex ----------------------------------------------------------------------------------------------


def test_reindex_puts_the_shops_name_over_a_knn_copy(
    engine: SearchEngine, settings: Settings, shop: ShopWriter, encoders: dict[str, Any], tmp_path: Path
) -> None:
    config = load_attach_config(write_attach_config(tmp_path, shop.index))
    apply_attachment(engine, plan_attachment(engine, config, settings, encoders))
    plan = plan_attachment(engine, config, settings, encoders)
    if engine.kind == "elasticsearch":
        with pytest.raises(ValidationError, match="approximate kNN"):
            reindex_attached(engine, plan, lambda message: True)
        return
    before = snapshot(shop)["sources"]
    cancelled = reindex_attached(engine, plan, lambda message: False)
    assert not cancelled.moved and shop.http.get(f"/{cancelled.copy}").status_code == 404
    assert snapshot(shop)["sources"] == before

    asked: list[str] = []
    result = reindex_attached(engine, plan, lambda message: asked.append(message) is None)
    assert result.moved and result.documents == 199 and result.copy == f"{shop.index}-hs-knn-1"
    assert "199 documents" in asked[0]
    aliases = shop.http.get(f"/_alias/{shop.index}").json()
    assert list(aliases) == [result.copy]
    settings_now = shop.http.get(f"/{result.copy}/_settings").json()[result.copy]["settings"]["index"]
    assert settings_now["knn"] == "true" and "shop_text" in settings_now["analysis"]["analyzer"]
    assert shop.http.get(f"/{shop.index}/_count").json()["count"] == 199
    assert snapshot(shop)["sources"] == before
    meta = mappings(shop)["_meta"]
    assert meta["owner"] == "shop-team" and meta["hybrid_search"]["attached"]["knn"] == "approximate"
    after = plan_attachment(engine, config, settings, encoders)
    assert after.ok and after.config.knn == "approximate" and after.concrete == result.copy
    assert after.additions == () and "kNN: approximate" in after.render()
    shop.update("MH01", {"price_usd": 1.5})  # the shop's writes by id go through the name
    assert (shop.source("MH01") or {})["price_usd"] == 1.5


# ---- the command line -------------------------------------------------------------------------------------


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HYBRID_SEARCH_ENGINE": settings.engine,
        "HYBRID_SEARCH_ENGINE_URL": settings.engine_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "hybrid_search.cli", "attach", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_attach_plan_on_the_command_line(tmp_path: Path) -> None:
    settings = engine_settings("opensearch")
    with shop_index(settings.engine_url, prefix="t-attach-cli") as writer:
        path = write_attach_config(tmp_path, writer.index)
        before = snapshot(writer)
        done = cli(settings, "plan", "--config", str(path))
        assert done.returncode == 0, done.stderr
        assert f"attach plan for {writer.index}: opensearch, 199 documents" in done.stdout
        assert "hs_text_vector" in done.stdout and "kNN: exact" in done.stdout
        assert "multiply-adds per query" in done.stdout and "ready:" in done.stdout
        as_json = cli(settings, "plan", "--config", str(path), "--json")
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["knn"]["mode"] == "exact"
        assert snapshot(writer) == before

        bad = tmp_path / "bad.toml"
        bad.write_text(path.read_text(encoding="utf-8").replace('title = "name"', 'title = "headline"'))
        refused = cli(settings, "plan", "--config", str(bad))
        assert refused.returncode == 1 and "REFUSED:" in refused.stdout
        assert "fields.title: 'headline' is not in the index's mapping" in refused.stdout
        applied = cli(settings, "apply", "--config", str(bad))
        assert applied.returncode == 1 and "Traceback" not in applied.stderr
        assert applied.stderr.strip().startswith("error: attach plan for")

        broken = tmp_path / "broken.toml"
        broken.write_text(path.read_text(encoding="utf-8") + "colour = 1\n")
        failed = cli(settings, "plan", "--config", str(broken))
        assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1
        assert "unknown key lexical.colour" in failed.stderr

    with httpx.Client() as http:
        assert http.get(f"{settings.engine_url}/{writer.index}").status_code == 404
