"""Command-line support for ``hybrid-search search``: options to a :class:`SearchQuery`, a response to tables.

Kept out of :mod:`hybrid_search.cli` so the command itself stays a few lines and this part can be tested alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from hybrid_search.errors import ValidationError
from hybrid_search.search.query import Filters, SearchQuery
from hybrid_search.search.response import SearchResponse


def read_image_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a query photo, refusing a file larger than ``max_bytes`` without reading all of it."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ValidationError(f"not found: {file}", field="image") from None
    except OSError as exc:
        raise ValidationError(f"unreadable: {file}: {exc.strerror or exc}", field="image") from None
    if len(data) > max_bytes:
        raise ValidationError(f"too large: {file} is more than {max_bytes} bytes", field="image")
    return data


def parse_weights(pairs: Sequence[str]) -> dict[str, float] | None:
    """``["bm25=0.7", "text_knn=0.3"]`` -> ``{"bm25": 0.7, "text_knn": 0.3}`` (names checked by SearchQuery)."""
    if not pairs:
        return None
    weights: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValidationError(f"weight {pair!r} is not retriever=number", field="weights")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValidationError(f"weight {pair!r}: {value!r} is not a number", field="weights") from None
    return weights


def build_query(
    text: str | None,
    *,
    image: bytes | None,
    filters: Sequence[str],
    weights: Sequence[str],
    **options: Any,
) -> SearchQuery:
    """A validated query from the command's options (``options``: the other :class:`SearchQuery` fields)."""
    return SearchQuery(
        text=text,
        image=image,
        filters=Filters.from_pairs(filters),
        weights=parse_weights(weights),
        **options,
    )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _price(fields: dict[str, Any]) -> str:
    price = fields.get("price")
    if price is None:
        return "-"
    return f"{price:,.2f} {fields.get('currency') or ''}".strip()


def render(response: SearchResponse, *, explain: bool) -> Group:
    """The hits as a table (one column per retriever with ``explain``), then total, facets and timings."""
    retrievers = list(response.retrievers)
    table = Table("rank", "id", "title", "price", "colour", "score", title_justify="left")
    explained = explain and any(h.explain for h in response.hits)
    names: list[str] = []
    if explained:
        names = [n for n in (response.hits[0].explain or {})] if response.hits else []
        for name in names:
            table.add_column(name)
    for hit in response.hits:
        colour = hit.fields.get("colour")
        row = [
            str(hit.rank),
            hit.id,
            str(hit.fields.get("title") or ""),
            _price(hit.fields),
            ", ".join(colour) if isinstance(colour, list) else str(colour or ""),
            f"{hit.score:.4f}",
        ]
        for name in names:
            c = (hit.explain or {}).get(name)
            if c is None:
                row.append("-")
            elif c.get("raw_score") is None:
                row.append(f"absent ={_fmt(c.get('weighted'))}")
            else:
                rank = f" #{c['rank']}" if c.get("rank") is not None else ""
                row.append(f"{_fmt(c['raw_score'])}>{_fmt(c.get('normalised'))} ={_fmt(c['weighted'])}{rank}")
        table.add_row(*row)
    f = response.fusion
    method = f["method"] + (
        f" ({f['normaliser']})"
        if f.get("normaliser")
        else f" (k={f['rank_constant']})"
        if f.get("rank_constant")
        else ""
    )
    weights = ", ".join(f"{k}={v:g}" for k, v in f["weights"].items())
    lines = [
        Text(
            f"{'' if response.total_relation == 'eq' else 'at least '}{response.total} products; page "
            f"{response.page} (size {response.size}); {method}; window {f['rank_window']}; "
            f"retrievers: {weights or ', '.join(retrievers)}"
        )
    ]
    for facet, buckets in (response.facets or {}).items():
        shown = ", ".join(f"{b['value']} ({b['count']})" for b in buckets if b["count"])[:300]
        if shown:
            lines.append(Text(f"{facet}: {shown}"))
    if names:
        lines.append(Text("retriever cells: raw score>normalised =weighted contribution #rank", style="dim"))
    t = response.timings
    lines.append(
        Text(
            f"timings: total {t.get('total_ms', 0):.1f} ms, encode {t.get('encode_ms', 0):.1f} ms, "
            f"engine {t.get('engine_ms', 0):.1f} ms, fusion {t.get('fusion_ms', 0):.2f} ms",
            style="dim",
        )
    )
    return Group(table, *lines)


__all__ = ["build_query", "parse_weights", "read_image_file", "render"]
