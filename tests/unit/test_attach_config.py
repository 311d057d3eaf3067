"""The attachment file (``attach.toml``) and the pure helpers that read a shop's documents through it.

Every bad key is refused by name; the lexical template's ``{{query}}`` is a JSON string value, substituted as a
value; what is recorded in ``_meta`` reads back as the same configuration; and a document's content hash follows
what is embedded (title, description, photo), not its price.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_search.catalog.attachment import (
    HS_FIELDS,
    HS_PREFIX,
    AttachConfig,
    ImageSource,
    LexicalSpec,
    attachment_from_meta,
    content_hash,
    embed_text,
    image_ref,
    is_stale,
    load_attach_config,
    parse_attach_config,
    source_value,
    substitute,
)
from hybrid_search.catalog.schema import FieldSchema
from hybrid_search.errors import ConfigurationError

pytestmark = pytest.mark.unit

ISSUE_TOML = """\
index = "shop-products"
[fields]
id = "sku"
title = "name"
description = "body"
colour = "colours"
price = "price_usd"
image = "picture"
updated_at = "modified"
extra_facets = ["season"]
[keywords]
name = "name.raw"
[images]
root = "/srv/media"
[lexical]
fields = ["name^3", "body"]
"""

DOC = {
    "sku": "MH01",
    "name": "Chaz Kangeroo Hoodie",
    "body": "Ideal for cold-weather training.",
    "colours": ["Gray", "Black"],
    "price_usd": 52.0,
    "picture": "images/MH01-gray.jpg",
    "modified": "2024-05-01T10:00:00Z",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "attach.toml"
    path.write_text(text, encoding="utf-8")
    return path


def parse(text: str) -> AttachConfig:
    import tomllib

    return parse_attach_config(tomllib.loads(text))


# ---- the file ----------------------------------------------------------------------------------------------


def test_the_issue_file_loads(tmp_path: Path) -> None:
    config = load_attach_config(write(tmp_path, ISSUE_TOML))
    assert config.index == "shop-products"
    assert config.schema.value_field("id") == "sku"
    assert config.schema.value_field("title") == "name"
    assert config.schema.keyword_field("title") == "name.raw"
    assert config.schema.keyword_field("colour") == "colours"
    assert config.schema.value_field("brand") is None
    assert config.schema.extra_facets == ("season",)
    assert config.images == ImageSource(root=Path("/srv/media"))
    assert config.lexical.kind == "fields"
    assert config.lexical.fields == ("name^3", "body")
    assert config.knn == ""  # decided by `attach plan`


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('index = "x"\ncolour = "c"\n[fields]\ntitle = "n"\n', "unknown key colour"),
        ('index = "x"\n[fields]\ntitle = "n"\nflavour = "f"\n', "unknown key fields.flavour"),
        ('index = "x"\n[fields]\ntitle = "n"\n[images]\nfolder = "/m"\n', "unknown key images.folder"),
        ('index = "x"\n[fields]\ntitle = "n"\n[lexical]\nfeilds = ["n"]\n', "unknown key lexical.feilds"),
        ('[fields]\ntitle = "n"\n', "index must be a non-empty string"),
        ('index = ""\n[fields]\ntitle = "n"\n', "index must be a non-empty string"),
        ('index = "x"\n[fields]\nid = "sku"\n', "fields.title is required"),
        ('index = "x"\n[fields]\ntitle = 3\n', "fields.title must be a non-empty string"),
        ('index = "x"\n[fields]\ntitle = "n"\nextra_facets = "season"\n', "fields.extra_facets must be"),
        ('index = "x"\n[fields]\ntitle = "n"\nextra_facets = ["brand"]\n', "extra facet 'brand'"),
        ('index = "x"\nfields = "n"\n', "fields must be a table"),
        ('index = "x"\n[fields]\ntitle = "n"\n[keywords]\nname = 1\n', "keywords.name must be"),
        ('index = "x"\n[fields]\ntitle = "hs_title"\n', "fields.title: 'hs_title' is a layer field"),
        (
            'index = "x"\n[fields]\ntitle = "n"\n[images]\nroot = "/m"\nurl_base = "https://c/"\n',
            "give root or url_base, not both",
        ),
        ('index = "x"\n[fields]\ntitle = "n"\n[images]\nurl_base = "ftp://c/"\n', "images.url_base must be"),
        (
            'index = "x"\n[fields]\ntitle = "n"\n[lexical]\nfields = ["n"]\ntemplate = "t"\n',
            "give exactly one of fields, query, template (got fields, template)",
        ),
        (
            'index = "x"\n[fields]\ntitle = "n"\n[lexical]\nfields = []\n',
            "lexical.fields must be a non-empty",
        ),
        ('index = "x"\n[fields]\ntitle = "n"\n[lexical]\nquery = "{nope"\n', "lexical.query is not JSON"),
        ('index = "x"\n[fields]\ntitle = "n"\n[lexical]\nquery = "[1]"\n', "must be a JSON object"),
    ],
)
def test_each_bad_key_is_named(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_attach_config(path)
    assert named in str(caught.value)
    assert str(path) in str(caught.value)  # the file is named too


def test_an_unreadable_or_broken_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the attachment file"):
        load_attach_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match="is not valid TOML"):
        load_attach_config(write(tmp_path, "index = \n"))
    (tmp_path / "latin1.toml").write_bytes('index = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigurationError, match="is not UTF-8"):
        load_attach_config(tmp_path / "latin1.toml")


def test_without_a_lexical_table_bm25_matches_the_text_roles() -> None:
    config = parse('index = "x"\n[fields]\ntitle = "name"\ndescription = "body"\ncolour = "colours"\n')
    assert config.lexical.fields == ("name^3", "colours^1.5", "body")


# ---- the lexical template --------------------------------------------------------------------------------


def test_the_query_template_needs_the_placeholder_as_a_string_value() -> None:
    with pytest.raises(ConfigurationError, match=r'the string value "\{\{query\}\}"'):
        parse('index = "x"\n[fields]\ntitle = "n"\n[lexical]\nquery = \'{"match": {"name": "q"}}\'\n')
    # inside a longer string it is not a placeholder: the text is never spliced into the template's text
    with pytest.raises(ConfigurationError, match="where the shopper's text goes"):
        parse(
            'index = "x"\n[fields]\ntitle = "n"\n[lexical]\nquery = \'{"match": {"name": "x {{query}}"}}\'\n'
        )


def test_the_shoppers_text_is_substituted_as_a_json_value() -> None:
    template = '{"bool": {"should": [{"match": {"name": "{{query}}"}}, {"match": {"body": "{{query}}"}}]}}'
    config = parse(f'index = "x"\n[fields]\ntitle = "n"\n[lexical]\nquery = \'{template}\'\n')
    assert config.lexical.kind == "query"
    text = 'red "coat"}, {"match_all": {}'
    body = config.lexical.body(text)
    assert body == {"bool": {"should": [{"match": {"name": text}}, {"match": {"body": text}}]}}
    assert json.loads(json.dumps(body)) == body  # still one query clause, the quotes stay inside the value
    assert substitute(["{{query}}", 3, {"a": None}], "t") == ["t", 3, {"a": None}]


def test_the_fields_form_is_a_multi_match_and_a_stored_template_is_rendered_by_the_engine() -> None:
    assert LexicalSpec(fields=("name^3", "body")).body("coat") == {
        "multi_match": {
            "query": "coat",
            "fields": ["name^3", "body"],
            "type": "best_fields",
            "operator": "or",
        }
    }
    spec = LexicalSpec(template="shop-search")
    assert spec.kind == "template"
    with pytest.raises(ConfigurationError, match="rendered by the engine"):
        spec.body("coat")


# ---- _meta ------------------------------------------------------------------------------------------------


def test_to_meta_and_from_meta_round_trip() -> None:
    config = parse(ISSUE_TOML)
    resolved = AttachConfig(
        index=config.index, schema=config.schema, lexical=config.lexical, images=config.images, knn="exact"
    )
    data = json.loads(json.dumps(resolved.to_meta()))  # plain JSON data, as the engine stores it
    assert data["fields"]["title"] == "name" and data["keywords"] == {"name": "name.raw"}
    assert AttachConfig.from_meta(data) == resolved
    assert attachment_from_meta({"owner": "shop", "hybrid_search": {"attached": data}}) == resolved
    template = LexicalSpec(query={"match": {"name": "{{query}}"}})
    other = AttachConfig(
        index="x",
        schema=FieldSchema(title="n"),
        lexical=template,
        images=ImageSource(url_base="https://cdn.example.com/"),
    )
    assert AttachConfig.from_meta(json.loads(json.dumps(other.to_meta()))) == other


def test_an_index_without_an_attachment_or_with_a_damaged_one() -> None:
    assert attachment_from_meta(None) is None
    assert attachment_from_meta({"owner": "shop"}) is None
    assert attachment_from_meta({"hybrid_search": {"vectors": {}}}) is None  # the layer's own index
    with pytest.raises(ConfigurationError, match="damaged"):
        AttachConfig.from_meta({"fields": {"title": "n"}})  # no index
    with pytest.raises(ConfigurationError, match="knn must be approximate or exact"):
        AttachConfig.from_meta({**parse(ISSUE_TOML).to_meta(), "knn": "fast"})


# ---- reading the shop's documents ------------------------------------------------------------------------


def test_source_value_reads_dotted_fields_as_keys_or_objects() -> None:
    source = {
        "name": "Hoodie",
        "info": {"brand": {"name": "Luma"}, "size": "M"},
        "a.b": "flat key",
        "x": {"y.z": "mixed"},
        "list": [{"v": 1}],
    }
    assert source_value(source, "name") == "Hoodie"
    assert source_value(source, "info.size") == "M"
    assert source_value(source, "info.brand.name") == "Luma"
    assert source_value(source, "a.b") == "flat key"
    assert source_value(source, "x.y.z") == "mixed"
    assert source_value(source, "info.colour") is None
    assert source_value(source, "missing.field") is None
    assert source_value(source, "list.v") is None  # arrays of objects are not a role value


def test_embed_text_joins_the_text_roles_and_lists() -> None:
    config = parse(ISSUE_TOML)
    assert (
        embed_text(DOC, config.schema)
        == "Chaz Kangeroo Hoodie. Gray, Black. Ideal for cold-weather training."
    )
    assert embed_text({"name": "Only a name", "colours": []}, config.schema) == "Only a name"


def test_image_ref_follows_the_image_source() -> None:
    schema = parse(ISSUE_TOML).schema
    assert image_ref(DOC, schema, ImageSource(root=Path("/srv/media"))) == "images/MH01-gray.jpg"
    cdn = ImageSource(url_base="https://cdn.example.com/media/")
    assert image_ref(DOC, schema, cdn) == "https://cdn.example.com/media/images/MH01-gray.jpg"
    absolute = {**DOC, "picture": ["", "https://img.example.com/a.jpg"]}
    assert image_ref(absolute, schema, cdn) == "https://img.example.com/a.jpg"
    assert image_ref({**DOC, "picture": None}, schema, cdn) is None


def test_the_content_hash_follows_what_is_embedded_not_the_price() -> None:
    config = parse(ISSUE_TOML)
    digest = content_hash(DOC, config.schema, config.images)
    assert content_hash({**DOC, "price_usd": 9.5}, config.schema, config.images) == digest
    assert content_hash({**DOC, "modified": "2025-01-01T00:00:00Z"}, config.schema, config.images) == digest
    assert content_hash({**DOC, "name": "Chaz Hoodie"}, config.schema, config.images) != digest
    assert content_hash({**DOC, "body": "Warm."}, config.schema, config.images) != digest
    assert content_hash({**DOC, "picture": "images/MH01-black.jpg"}, config.schema, config.images) != digest
    assert content_hash(DOC, config.schema, ImageSource(url_base="https://cdn.example.com/")) != digest


def test_a_document_is_stale_until_its_hs_fields_match() -> None:
    config = parse(ISSUE_TOML)
    digest = content_hash(DOC, config.schema, config.images)
    embedded = {**DOC, "hs_content_hash": digest, "hs_model_version": "v1"}
    assert is_stale(DOC, config, "v1")
    assert not is_stale(embedded, config, "v1")
    assert not is_stale({**embedded, "price_usd": 1.0}, config, "v1")
    assert is_stale({**embedded, "name": "New"}, config, "v1")
    assert is_stale(embedded, config, "v2")
    assert all(name.startswith(HS_PREFIX) for name in HS_FIELDS)
