"""Retrieval methods to evaluate, written as short specs and turned into :class:`SearchQuery` parameters.

Grammar (``-`` and ``_`` are interchangeable in retriever names; an optional ``@<window>`` suffix sets the rank
window, the candidates each retriever fetches)::

    bm25 | text-knn | image-knn | colour-knn | fused-knn | text-to-image | image-to-text
                                  one retriever alone (every other weight 0)
    native[:<weights>]            the engine's own sum of the weighted BM25 and kNN scores, one request
    linear[:<normaliser>[:<weights>]]
                                  client-side linear fusion; normaliser minmax, zscore, l2 or dbsf
    rrf[:<k>[:<weights>]]         client-side reciprocal rank fusion with rank constant k
    learned                       the learned fusion model `hybrid-search tune --learned` saved in the index's
                                  _meta (text queries; others fall back to linear fusion)
    tuned                         the configuration `hybrid-search tune` saved in the index's _meta

``<weights>`` is either ``name=w,name=w`` (any retrievers, e.g. ``bm25=0.7,text_knn=0.3``) or one number
``a`` in [0, 1], the share of text kNN: ``bm25 = 1 - a``, ``text_knn = a`` (Weaviate's ``alpha``).
Examples: ``linear:minmax:0.3``, ``linear:dbsf``, ``rrf:60``, ``rrf:20:0.5@200``, ``native``.

Every method but ``tuned`` is *fixed*: what its spec leaves out comes from the settings, never from a tuned
configuration, so its figures do not change when the index is tuned. ``tuned`` leaves everything to the
index's saved configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import NORMALISERS
from hybrid_search.search.query import MAX_RANK_WINDOW, RETRIEVERS

SINGLE = {name.replace("_", "-"): name for name in RETRIEVERS}
FUSIONS = ("linear", "rrf", "native", "learned")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method: ``name`` is the spec as written; None means "not said" (settings or tuned)."""

    name: str
    fusion: str | None = None
    normaliser: str | None = None
    rank_constant: float | None = None
    rank_window: int | None = None
    weights: Mapping[str, float] | None = None
    only: str | None = None  # a single retriever's name
    tuned: bool = False

    def query_params(self) -> dict[str, Any]:
        """Keyword arguments for :class:`SearchQuery` (text, image, size and page are the caller's)."""
        if self.tuned:
            return {}
        params: dict[str, Any] = {"fusion": self.fusion}
        if self.only is not None:
            params["weights"] = {name: 1.0 if name == self.only else 0.0 for name in RETRIEVERS}
        elif self.weights is not None:
            params["weights"] = dict(self.weights)
        if self.normaliser is not None:
            params["normaliser"] = self.normaliser
        if self.rank_constant is not None:
            params["rank_constant"] = self.rank_constant
        if self.rank_window is not None:
            params["rank_window"] = self.rank_window
        return params

    def describe(self) -> str:
        """One line saying what the method does."""
        if self.tuned:
            return "the index's tuned configuration"
        window = f", window {self.rank_window}" if self.rank_window is not None else ""
        if self.only is not None:
            return f"{self.only} alone{window}"
        weights = (
            ", ".join(f"{k}={v:g}" for k, v in self.weights.items()) if self.weights else "default weights"
        )
        if self.fusion == "linear":
            return f"linear fusion, {self.normaliser or 'default normaliser'}, {weights}{window}"
        if self.fusion == "rrf":
            k = f"k={self.rank_constant:g}" if self.rank_constant is not None else "default k"
            return f"reciprocal rank fusion, {k}, {weights}{window}"
        return f"native engine sum, {weights}{window}"


def _fail(spec: str, why: str) -> ValidationError:
    return ValidationError(f"method {spec!r}: {why}", field="methods")


def _number(spec: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _fail(spec, f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise _fail(spec, f"{what} {text!r} is not finite")
    return value


def parse_weights(spec: str, text: str) -> dict[str, float]:
    """``name=w,...`` or one number ``a`` (``bm25 = 1 - a``, ``text_knn = a``)."""
    if "=" not in text:
        alpha = _number(spec, text, "text kNN share")
        if not 0.0 <= alpha <= 1.0:
            raise _fail(spec, f"text kNN share {text} must be between 0 and 1")
        return {"bm25": round(1.0 - alpha, 12), "text_knn": alpha}
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        key = name.strip().replace("-", "_")
        if not sep or key not in RETRIEVERS:
            raise _fail(
                spec, f"weight {part!r} is not retriever=number (retrievers: {', '.join(RETRIEVERS)})"
            )
        if key in weights:
            raise _fail(spec, f"weight of {key} given twice")
        weight = _number(spec, value.strip(), f"weight of {key}")
        if weight < 0:
            raise _fail(spec, f"weight of {key} is negative")
        weights[key] = weight
    if all(w == 0.0 for w in weights.values()):
        raise _fail(spec, "every weight is zero")
    return weights


def parse_method(spec: str) -> MethodSpec:
    """One method spec (module docstring) -> :class:`MethodSpec`; a clear error naming the spec when wrong."""
    text = spec.strip()
    if not text:
        raise _fail(spec, "empty method")
    body, at, window_text = text.partition("@")
    window: int | None = None
    if at:
        if not window_text.strip().isdigit() or not 1 <= int(window_text) <= MAX_RANK_WINDOW:
            raise _fail(spec, f"rank window {window_text!r} must be an integer from 1 to {MAX_RANK_WINDOW}")
        window = int(window_text)
    head, *rest = [p.strip() for p in body.split(":")]
    head = head.lower()
    if head == "tuned":
        if rest or at:
            raise _fail(spec, "tuned takes no parameters: it is the index's saved configuration")
        return MethodSpec(text, tuned=True)
    if head in SINGLE or head in RETRIEVERS:
        if rest:
            raise _fail(spec, f"{head} is one retriever alone and takes no parameters")
        return MethodSpec(text, fusion="linear", rank_window=window, only=SINGLE.get(head, head))
    if head not in FUSIONS:
        raise _fail(
            spec,
            f"unknown method {head!r}; use one of {', '.join(SINGLE)}, native, linear, rrf, learned or tuned",
        )
    if head == "learned":
        if rest:
            raise _fail(spec, "learned takes no parameters: it is the index's learned fusion model")
        return MethodSpec(text, fusion="learned", rank_window=window)
    if head == "native":
        if len(rest) > 1:
            raise _fail(spec, "native takes at most one parameter: native:<weights>")
        weights = parse_weights(spec, rest[0]) if rest else None
        return MethodSpec(text, fusion="native", rank_window=window, weights=weights)
    if len(rest) > 2:
        raise _fail(spec, f"{head} takes at most two parameters")
    weights = parse_weights(spec, rest[1]) if len(rest) == 2 else None
    if head == "linear":
        normaliser = rest[0].lower() if rest else None
        if normaliser is not None and normaliser not in NORMALISERS:
            raise _fail(spec, f"unknown normaliser {rest[0]!r}; use one of {', '.join(NORMALISERS)}")
        return MethodSpec(text, fusion="linear", normaliser=normaliser, rank_window=window, weights=weights)
    rank_constant = _number(spec, rest[0], "rank constant") if rest else None
    if rank_constant is not None and rank_constant <= 0:
        raise _fail(spec, "rank constant must be > 0")
    return MethodSpec(text, fusion="rrf", rank_constant=rank_constant, rank_window=window, weights=weights)


def parse_methods(text: str | list[str]) -> list[MethodSpec]:
    """Comma-free list: specs separated by spaces, or a list of specs; names must be distinct."""
    items = text.split() if isinstance(text, str) else [t for part in text for t in part.split()]
    if not items:
        raise ValidationError("no methods given", field="methods")
    specs = [parse_method(item) for item in items]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"method {duplicates[0]!r} is given twice", field="methods")
    return specs


__all__ = ["MethodSpec", "parse_method", "parse_methods", "parse_weights"]
