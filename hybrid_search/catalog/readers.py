"""Read a catalogue: JSONL, CSV, the Luma store folder or the Home Depot products file.

:func:`open_catalogue` looks at the path and picks the format; :meth:`Catalogue.records` yields each record as a
validated :class:`Product` or a :class:`RecordError` naming where it is and what is wrong, so one bad record never
stops the rest. Ids must be unique within a catalogue: a repeated id is an error at its second occurrence.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_search.catalog.records import Product, json_problem, validate_product
from hybrid_search.errors import ValidationError

MAX_LINE_BYTES = 16 * 1024 * 1024
LUMA_FILE = "products_flat.csv"


@dataclass(frozen=True)
class RecordError:
    """A record that could not be read or validated."""

    source: str
    id: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """As stored and shown: lone surrogates (``"\\ud800"`` in JSON) become ``?``, since no UTF-8 can hold them."""
        return {"source": _utf8(self.source), "id": _safe(self.id), "reason": _utf8(self.reason)}


def _luma_row(row: Mapping[str, str]) -> dict[str, Any]:
    """A row of Luma's ``products_flat.csv`` in the catalogue format."""
    attributes: dict[str, Any] = {}
    material: Any = None
    raw = row.get("attributes") or ""
    if raw.strip():
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"attributes is not a JSON object: {json_problem(exc)}") from None
        if not isinstance(parsed, dict):
            raise ValueError("attributes is not a JSON object")
        material = parsed.pop("material", None)
        attributes = parsed
    return {
        "id": row.get("sku"),
        "title": row.get("name"),
        "description": row.get("description") or "",
        "category_path": row.get("categories") or "",
        "price": row.get("price"),
        "colour": row.get("colors") or "",
        "size": row.get("sizes") or "",
        "material": material,
        "attributes": attributes,
        "images": row.get("images") or "",
    }


def _homedepot_row(row: Mapping[str, str]) -> dict[str, Any]:
    return {"id": row.get("product_uid"), "title": row.get("title")}


@dataclass(frozen=True)
class Catalogue:
    """A catalogue file (or folder) and the folder its relative image paths start from."""

    path: Path
    format: str
    base_dir: Path

    def records(self) -> Iterator[Product | RecordError]:
        seen: dict[str, str] = {}
        for source, data in self._raw():
            if isinstance(data, RecordError):
                yield data
                continue
            raw_id = data.get("id") if isinstance(data, Mapping) else None
            try:
                product = validate_product(data)
            except ValueError as exc:
                yield RecordError(source, str(raw_id)[:256] if raw_id is not None else None, str(exc))
                continue
            if product.id in seen:
                yield RecordError(
                    source, product.id, f"duplicate id {product.id!r} (first at {seen[product.id]})"
                )
                continue
            seen[product.id] = source
            yield product

    def _raw(self) -> Iterator[tuple[str, Any]]:
        if self.format == "jsonl":
            yield from self._jsonl()
        else:
            yield from self._csv()

    def _jsonl(self) -> Iterator[tuple[str, Any]]:
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                source = f"{self.path.name}:{number}"
                if len(line) > MAX_LINE_BYTES:
                    yield (
                        source,
                        RecordError(source, None, f"line is {len(line)} bytes (limit {MAX_LINE_BYTES})"),
                    )
                    continue
                if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte-order mark (Notepad, Excel)
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield source, RecordError(source, None, f"not valid UTF-8 (byte {exc.start})")
                    continue
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield (
                        source,
                        RecordError(source, None, f"not valid JSON: {exc.msg} at column {exc.colno}"),
                    )
                    continue
                except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting 100,000 deep
                    yield source, RecordError(source, None, f"not valid JSON: {json_problem(exc)}")
                    continue
                yield source, data

    def _csv(self) -> Iterator[tuple[str, Any]]:
        convert = {"luma": _luma_row, "homedepot": _homedepot_row}.get(self.format)
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with self.path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                source = f"{self.path.name}:{reader.line_num}"
                row_id = row.get("id") or row.get("sku") or row.get("product_uid")
                if any(isinstance(v, str) and _has_surrogates(v) for v in row.values()):
                    yield source, RecordError(source, _safe(row_id), "not valid UTF-8")
                    continue
                if None in row:
                    yield source, RecordError(source, _safe(row_id), "more fields than the header names")
                    continue
                try:
                    yield source, convert(row) if convert else _csv_row(row)
                except (ValueError, json.JSONDecodeError) as exc:
                    yield source, RecordError(source, _safe(row_id), str(exc))


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _utf8(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


def _safe(value: str | None) -> str | None:
    if value is None:
        return None
    return value.encode("utf-8", "replace").decode("utf-8")[:256]


def _csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k is not None and v not in (None, "")}


def open_catalogue(path: str | Path) -> Catalogue:
    """Recognise a catalogue: a Luma folder (with ``products_flat.csv``), ``*.jsonl``/``*.ndjson``, or ``*.csv``
    (the Home Depot ``product_uid,title`` file is recognised by its header)."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / LUMA_FILE).is_file():
            return Catalogue(p / LUMA_FILE, "luma", p.resolve())
        raise ValidationError(
            f"{p} is a folder without {LUMA_FILE}; give a .jsonl or .csv file", field="catalogue"
        )
    if not p.is_file():
        raise ValidationError(f"catalogue {p} does not exist", field="catalogue")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return Catalogue(p, "jsonl", p.parent.resolve())
    if suffix == ".csv":
        with p.open("r", encoding="utf-8", errors="replace", newline="") as handle:
            header = next(csv.reader(io.StringIO(handle.readline())), [])
        fields = [h.strip().lstrip("\ufeff") for h in header]
        if fields[:2] == ["product_uid", "title"]:
            return Catalogue(p, "homedepot", p.parent.resolve())
        if "sku" in fields and "name" in fields and "images" in fields:
            return Catalogue(p, "luma", p.parent.resolve())
        if "id" not in fields or "title" not in fields:
            raise ValidationError(
                f"{p.name}: a CSV catalogue needs id and title columns, found {[f[:40] for f in fields[:12]]}"
            )
        return Catalogue(p, "csv", p.parent.resolve())
    raise ValidationError(
        f"{p.name}: unknown catalogue format (expected .jsonl, .ndjson, .csv or a Luma folder)"
    )


def convert_to_jsonl(catalogue: Catalogue, out: io.TextIOBase | Any) -> tuple[int, list[RecordError]]:
    """Write the catalogue's valid products as JSONL (the native format); returns (written, errors)."""
    written, errors = 0, []
    for item in catalogue.records():
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        record = item.to_input(catalogue.base_dir)
        out.write(json.dumps(record, ensure_ascii=False))
        out.write("\n")
        written += 1
    return written, errors


__all__ = ["Catalogue", "RecordError", "convert_to_jsonl", "open_catalogue"]
