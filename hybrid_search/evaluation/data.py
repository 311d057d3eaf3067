"""Evaluation inputs: query files and relevance judgments (qrels), read with errors that name file and line.

Queries (TSV, UTF-8)::

    qid<TAB>text                      no header: text queries (Home Depot's queries_dev.tsv)
    qid<TAB>text<TAB>image            with this header line: photo or photo + text queries

With the header, the columns are named by it (``qid`` and at least one of ``text`` / ``image``, any order); a
row may leave ``text`` or ``image`` empty, not both. ``image`` is a file path, relative to the query file's
folder unless absolute; it must exist. Query ids are unique.

Qrels (TSV)::

    qid<TAB>doc_id<TAB>grade          grade: a number (Home Depot: 1..3, fractional means of raters)

An optional header line starting ``qid<TAB>`` is skipped. A (qid, doc_id) pair is judged once. Blank lines are
skipped in both files. ``Judgments`` turns grades into gains (``grade - grade_offset``, must be >= 0) and the
set of relevant documents (``grade >= relevant_grade``).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybrid_search.errors import ValidationError

QUERY_COLUMNS = ("qid", "text", "image")


@dataclass(frozen=True)
class EvalQuery:
    """One evaluation query: its id, text and/or a photo file."""

    qid: str
    text: str | None = None
    image: Path | None = None


@dataclass(frozen=True)
class Judgments:
    """Graded judgments of one query set: ``gains[qid][doc_id]`` and ``relevant[qid]``."""

    gains: Mapping[str, Mapping[str, float]]
    relevant: Mapping[str, frozenset[str]]
    grade_offset: float
    relevant_grade: float


def _lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{what} file {path} does not exist", field=what) from None
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{what} file {path} is not UTF-8 text ({exc.reason})", field=what) from None
    except OSError as exc:
        raise ValidationError(f"cannot read {what} file {path}: {exc.strerror or exc}", field=what) from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def read_queries(path: str | Path) -> list[EvalQuery]:
    """The queries of a TSV file (module docstring), in file order."""
    path = Path(path)
    lines = list(_lines(path, "queries"))
    if not lines:
        raise ValidationError(f"{path}: no queries", field="queries")
    columns: tuple[str, ...] = ("qid", "text")
    first = lines[0][1].split("\t")
    if first[0].strip().lower() == "qid":
        columns = tuple(c.strip().lower() for c in first)
        unknown = [c for c in columns if c not in QUERY_COLUMNS]
        if unknown or len(set(columns)) != len(columns):
            raise ValidationError(
                f"{path}:{lines[0][0]}: header columns must be qid, text and/or image (each once), "
                f"got {', '.join(columns)}",
                field="queries",
            )
        if "text" not in columns and "image" not in columns:
            raise ValidationError(f"{path}:{lines[0][0]}: header needs a text or an image column", "queries")
        lines = lines[1:]
    queries: list[EvalQuery] = []
    seen: set[str] = set()
    for number, line in lines:
        where = f"{path}:{number}"
        cells = line.split("\t")
        if len(cells) != len(columns):
            raise ValidationError(
                f"{where}: expected {len(columns)} tab-separated columns ({', '.join(columns)}), "
                f"got {len(cells)}",
                field="queries",
            )
        row = {name: cell.strip() for name, cell in zip(columns, cells, strict=True)}
        qid = row["qid"]
        if not qid:
            raise ValidationError(f"{where}: empty query id", field="queries")
        if qid in seen:
            raise ValidationError(f"{where}: query id {qid!r} appears twice", field="queries")
        seen.add(qid)
        text = row.get("text") or None
        image: Path | None = None
        if row.get("image"):
            image = Path(row["image"])
            if not image.is_absolute():
                image = path.parent / image
            if not image.is_file():
                raise ValidationError(f"{where}: image file {image} does not exist", field="queries")
        if text is None and image is None:
            raise ValidationError(f"{where}: query {qid!r} has neither text nor an image", field="queries")
        queries.append(EvalQuery(qid, text, image))
    if not queries:
        raise ValidationError(f"{path}: no queries after the header", field="queries")
    return queries


def read_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """``{qid: {doc_id: grade}}`` from a TSV file (module docstring)."""
    path = Path(path)
    grades: dict[str, dict[str, float]] = {}
    for number, line in _lines(path, "qrels"):
        where = f"{path}:{number}"
        cells = [c.strip() for c in line.split("\t")]
        if not grades and cells[0].lower() == "qid":
            continue  # a header line
        if len(cells) != 3:
            raise ValidationError(
                f"{where}: expected 3 tab-separated columns (qid, doc_id, grade), got {len(cells)}",
                field="qrels",
            )
        qid, doc_id, raw = cells
        if not qid or not doc_id:
            raise ValidationError(f"{where}: empty query id or document id", field="qrels")
        try:
            grade = float(raw)
        except ValueError:
            raise ValidationError(f"{where}: grade {raw!r} is not a number", field="qrels") from None
        if not math.isfinite(grade):
            raise ValidationError(f"{where}: grade {raw!r} is not finite", field="qrels")
        judged = grades.setdefault(qid, {})
        if doc_id in judged:
            raise ValidationError(f"{where}: {qid} / {doc_id} is judged twice", field="qrels")
        judged[doc_id] = grade
    if not grades:
        raise ValidationError(f"{path}: no judgments", field="qrels")
    return grades


def judgments(
    grades: Mapping[str, Mapping[str, float]], *, grade_offset: float = 0.0, relevant_grade: float = 1.0
) -> Judgments:
    """Gains (``grade - grade_offset``) and relevant sets (``grade >= relevant_grade``) of every query."""
    if not math.isfinite(grade_offset) or not math.isfinite(relevant_grade):
        raise ValidationError("grade offset and relevant grade must be finite numbers", field="grade_offset")
    gains: dict[str, dict[str, float]] = {}
    relevant: dict[str, frozenset[str]] = {}
    for qid, judged in grades.items():
        per_query: dict[str, float] = {}
        for doc_id, grade in judged.items():
            gain = grade - grade_offset
            if gain < 0:
                raise ValidationError(
                    f"query {qid}, document {doc_id}: grade {grade:g} minus the grade offset {grade_offset:g} "
                    "is negative; set --grade-offset to the lowest grade of the scale",
                    field="grade_offset",
                )
            per_query[doc_id] = gain
        gains[qid] = per_query
        relevant[qid] = frozenset(d for d, g in judged.items() if g >= relevant_grade)
    return Judgments(gains, relevant, grade_offset, relevant_grade)


def judged_queries(queries: Sequence[EvalQuery], judged: Judgments) -> tuple[list[EvalQuery], list[str]]:
    """The queries that have judgments, and the ids of those that have none (left out of every metric)."""
    kept = [q for q in queries if q.qid in judged.gains]
    return kept, [q.qid for q in queries if q.qid not in judged.gains]


def fingerprint(qids: Sequence[str]) -> str:
    """A short stable hash of a query set (order-free): tells whether two runs used the same queries."""
    digest = hashlib.sha256("\n".join(sorted(qids)).encode("utf-8")).hexdigest()
    return digest[:16]


def sample(queries: Sequence[EvalQuery], count: int | None, seed: int = 0) -> list[EvalQuery]:
    """A fixed random sample of ``count`` queries (all when None or larger), kept in file order."""
    if count is None or count >= len(queries):
        return list(queries)
    if count < 1:
        raise ValidationError(f"sample size must be >= 1, got {count}", field="sample")
    chosen = set(random.Random(seed).sample(range(len(queries)), count))  # noqa: S311 - not for security
    return [q for i, q in enumerate(queries) if i in chosen]


__all__ = [
    "EvalQuery",
    "Judgments",
    "fingerprint",
    "judged_queries",
    "judgments",
    "read_qrels",
    "read_queries",
    "sample",
]
