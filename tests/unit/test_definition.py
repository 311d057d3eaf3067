from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_search.engine.definition import (
    EncoderRef,
    check_vector_sources,
    load_definition,
    parse_version,
    versioned_name,
)
from hybrid_search.errors import ConfigurationError, EncoderMismatchError

pytestmark = pytest.mark.unit

REF = EncoderRef("minilm", "v1")


def test_versioned_names() -> None:
    assert versioned_name("products", 3) == "products-v3"
    assert parse_version("products", "products-v12") == 12
    assert parse_version("products", "products-vx") is None
    assert parse_version("products", "shop-products-v1") is None
    assert parse_version("shop", "shop-products-v1") is None


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="audio"):
        load_definition({"audio": (REF, 10)})


def test_bad_dimension_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"outside 1\.\.4096"):
        load_definition({"text": (REF, 0)})


def test_custom_mappings_folder(tmp_path: Path) -> None:
    (tmp_path / "products.json").write_text(
        json.dumps({"mappings": {"properties": {"id": {"type": "keyword"}}}})
    )
    (tmp_path / "vectors.json").write_text(json.dumps({"v": {"source": "text", "similarity": "dot_product"}}))
    d = load_definition({"text": (REF, 8)}, mappings_dir=tmp_path)
    assert [(v.name, v.dim, v.similarity) for v in d.vectors] == [("v", 8, "dot_product")]


def test_broken_mapping_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "products.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_definition({}, mappings_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"cannot read mapping file 'products\.json'"):
        load_definition({}, mappings_dir=tmp_path / "missing")


def test_check_vector_sources() -> None:
    recorded = {"text_vector": {"encoder": "minilm", "version": "v1", "dim": 384}}
    check_vector_sources("i", recorded, {"text_vector": REF}, {"text_vector"})
    check_vector_sources("i", recorded, {}, set())
    with pytest.raises(EncoderMismatchError, match="refusing vectors of"):
        check_vector_sources("i", recorded, {"text_vector": EncoderRef("minilm", "v2")}, {"text_vector"})
    with pytest.raises(EncoderMismatchError, match="without naming the encoder"):
        check_vector_sources("i", recorded, {}, {"text_vector"})
    with pytest.raises(EncoderMismatchError, match="no vector field 'image_vector'"):
        check_vector_sources("i", recorded, {"image_vector": REF}, {"image_vector"})
