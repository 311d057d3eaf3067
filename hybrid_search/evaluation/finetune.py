"""Fine-tune the text encoder on the shop's own judgments (or click logs in the same format).

Training data are (query, relevant product) pairs: a product is relevant when its grade reaches
``relevant_grade``. Each pair also carries one hard negative: a product judged for that query below
``negative_grade`` when there is one (the shop's own engine showed it for the query and people said no: the
hardest and safest negative), else a product BM25 ranks high for the query that is not judged relevant.

The loss is the contrastive "multiple negatives ranking" loss: for a batch of B pairs, each query must score its
own positive above the other B - 1 positives of the batch (in-batch negatives) and the B hard negatives, with
cosine similarities scaled by ``scale`` into a softmax cross-entropy. Batches never hold the same query or the same
product twice (that would make a positive of one pair a negative of another).

The output is a versioned Hugging Face folder (``<out>/<base>-ft-<UTC time>``) that ``hf-text:<folder>`` loads
like any other model; its ``hybrid_search_model.json`` records the base model, the data and the training figures.
An index built with it records the folder's fingerprint in its ``_meta`` (see
:mod:`hybrid_search.engine.definition`), so ``hybrid-search reindex`` with the new model is a new, traceable
index version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_search.catalog import Catalogue, Product, product_text
from hybrid_search.encoders.base import import_torch, pick_device
from hybrid_search.encoders.text import MINILM_NAME, minilm_folder, resolve_hf_folder
from hybrid_search.engine import SearchEngine
from hybrid_search.errors import ConfigurationError, ValidationError
from hybrid_search.search import SearchQuery, SearchService
from hybrid_search.settings import Settings

log = logging.getLogger(__name__)

MODEL_CARD = "hybrid_search_model.json"
MINED_DEPTH = 10  # BM25 hits per query that a mined hard negative is drawn from


@dataclass(frozen=True)
class TrainingPair:
    """One training example: a query, a product text that answers it, and a hard negative's text (or None)."""

    qid: str
    query: str
    positive_id: str
    positive: str
    negative: str | None = None


@dataclass
class TrainingReport:
    """What one training run did: the folder it wrote and its figures."""

    folder: Path
    pairs: int
    queries: int
    epochs: int
    steps: int
    seconds_per_epoch: list[float] = field(default_factory=list)
    loss_per_epoch: list[float] = field(default_factory=list)
    device: str = "cpu"

    def summary(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "pairs": self.pairs,
            "queries": self.queries,
            "epochs": self.epochs,
            "steps": self.steps,
            "minutes_per_epoch": [round(s / 60, 2) for s in self.seconds_per_epoch],
            "loss_per_epoch": [round(x, 4) for x in self.loss_per_epoch],
            "device": self.device,
        }

    @property
    def encoder_spec(self) -> str:
        """The ``text_encoder`` setting that loads the trained model (``hf-text:<absolute folder>``)."""
        return f"hf-text:{self.folder.resolve()}"


def base_folder(spec: str) -> Path:
    """The model folder of a text encoder spec: ``minilm``, ``hf-text:<name or folder>`` or a plain folder/name."""
    name, sep, argument = spec.strip().partition(":")
    if name.lower() == "minilm" and not sep:
        return minilm_folder()
    if name.lower() == "hf-text" and argument.strip():
        return resolve_hf_folder(argument.strip())
    if name.lower() in {"clip", "efficientnet-lite0", "resnet50", "colour", "color"}:
        raise ConfigurationError(
            f"{spec!r} is not a text encoder that can be fine-tuned (use minilm or hf-text:...)"
        )
    return resolve_hf_folder(spec.strip())


def training_pairs(
    queries: Mapping[str, str],
    grades: Mapping[str, Mapping[str, float]],
    texts: Mapping[str, str],
    *,
    relevant_grade: float,
    negative_grade: float | None = None,
    mined: Mapping[str, Sequence[str]] | None = None,
    per_query: int | None = None,
    seed: int = 0,
) -> list[TrainingPair]:
    """Pairs for every (query, relevant product) with a text; each with a hard negative where one exists.

    ``grades[qid][doc_id]`` are the judgments; ``negative_grade`` (default: below ``relevant_grade``) bounds the
    judged negatives; ``mined[qid]`` is a ranked list (e.g. BM25's top hits) to draw a negative from when the query
    has no judged one: one of its first three products not judged relevant. ``per_query`` keeps at most that many pairs per query (its best-graded products), which bounds
    the training time and stops queries with many judged products from dominating. Pure and deterministic for a
    given ``seed``.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible shuffle, not a secret
    ceiling = relevant_grade if negative_grade is None else negative_grade
    pairs: list[TrainingPair] = []
    for qid in sorted(grades):
        query = queries.get(qid)
        if not query:
            continue
        judged = grades[qid]
        positives = sorted(d for d, g in judged.items() if g >= relevant_grade and d in texts)
        if not positives:
            continue
        if per_query is not None:
            positives = sorted(positives, key=lambda d: (-judged[d], d))[:per_query]
        negatives = sorted(d for d, g in judged.items() if g < ceiling and d in texts)
        if not negatives and mined is not None:
            negatives = [d for d in mined.get(qid, ()) if d in texts and judged.get(d, 0.0) < relevant_grade][
                :3
            ]
        for doc in positives:
            negative = texts[rng.choice(negatives)] if negatives else None
            pairs.append(TrainingPair(qid, query, doc, texts[doc], negative))
    return pairs


def catalogue_texts(catalogue: Catalogue) -> dict[str, str]:
    """Each valid product's text, as its ``text_vector`` embeds it (:func:`product_text`), by product id."""
    return {p.id: product_text(p.document()) for p in catalogue.records() if isinstance(p, Product)}


def bm25_service(settings: Settings, engine: SearchEngine) -> SearchService:
    """A search service without encoders: BM25 only, so no model is loaded, and the settings' fusion defaults
    (the index's tuned configuration is ignored). Mining hard negatives needs nothing more."""
    return SearchService(settings, engine, {}, use_tuned=False)


def mine_negatives(
    settings: Settings,
    engine: SearchEngine,
    queries: Mapping[str, str],
    qids: Iterable[str],
    *,
    index: str,
    depth: int = MINED_DEPTH,
    on_query: Callable[[int], None] | None = None,
) -> dict[str, list[str]]:
    """BM25's top ``depth`` product ids on ``index`` for each of ``qids`` (their text in ``queries``): the ranked
    lists :func:`training_pairs` draws a hard negative from (``mined``) for a query with no judged one.

    ``on_query(n)`` is called after the n-th query.
    """
    service = bm25_service(settings, engine)
    mined: dict[str, list[str]] = {}
    for n, qid in enumerate(qids, 1):
        query = SearchQuery(text=queries[qid], size=depth, rank_window=depth, facets=False,
                            weights={"bm25": 1.0, "text_knn": 0.0}, fusion="linear")  # fmt: skip
        mined[qid] = [h.id for h in service.search(query, index=index).hits]
        if on_query is not None:
            on_query(n)
    return mined


def batches(pairs: Sequence[TrainingPair], size: int, rng: random.Random) -> list[list[TrainingPair]]:
    """Shuffled batches of ``size`` in which no query and no positive product appears twice.

    A pair that would repeat one waits for a later batch; the last batches may be smaller.
    """
    if size < 2:
        raise ValidationError(
            "batch size must be at least 2 (in-batch negatives need company)", field="batch_size"
        )
    pending = list(pairs)
    rng.shuffle(pending)
    out: list[list[TrainingPair]] = []
    while pending:
        batch: list[TrainingPair] = []
        seen_q: set[str] = set()
        seen_d: set[str] = set()
        left: list[TrainingPair] = []
        for pair in pending:
            if len(batch) < size and pair.qid not in seen_q and pair.positive_id not in seen_d:
                batch.append(pair)
                seen_q.add(pair.qid)
                seen_d.add(pair.positive_id)
            else:
                left.append(pair)
        out.append(batch)
        pending = left
    return out


def data_fingerprint(pairs: Iterable[TrainingPair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(f"{pair.qid}\t{pair.positive_id}\t{pair.negative or ''}\n".encode())
    return digest.hexdigest()[:16]


def _freeze(model: Any, layers: int) -> None:
    if layers <= 0:
        return
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if blocks is None or not hasattr(model, "embeddings"):
        raise ConfigurationError(
            f"cannot freeze layers of a {type(model).__name__}: no embeddings/encoder.layer"
        )
    if layers >= len(blocks):
        raise ValidationError(
            f"freeze_layers must be below the model's {len(blocks)} layers", field="freeze_layers"
        )
    for module in (model.embeddings, *blocks[:layers]):
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def _encode(torch: Any, model: Any, tokenizer: Any, texts: list[str], max_length: int, device: str) -> Any:
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    tokens = {key: value.to(device) for key, value in tokens.items()}
    hidden = model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def train(
    pairs: Sequence[TrainingPair],
    *,
    base: str,
    out_dir: Path,
    epochs: int = 1,
    batch_size: int = 64,
    learning_rate: float = 2e-5,
    warmup: float = 0.1,
    scale: float = 20.0,
    max_length: int = 64,
    freeze_layers: int = 0,
    device: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    name: str | None = None,
) -> TrainingReport:
    """Fine-tune ``base`` (a text encoder spec) on ``pairs``; write and return a new versioned model folder.

    ``freeze_layers`` keeps the token embeddings and that many lower transformer layers fixed: the backward pass
    then stops above them, which makes each step cheaper on a CPU.
    ``progress(step, steps, loss)`` is called after each optimiser step.
    """
    if not pairs:
        raise ValidationError(
            "no training pairs: do the judgments name products of the catalogue?", field="qrels"
        )
    if epochs < 1:
        raise ValidationError("epochs must be at least 1", field="epochs")
    torch = import_torch()
    from transformers import AutoModel, AutoTokenizer

    folder = base_folder(base)
    device = pick_device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)  # noqa: S311 - a reproducible shuffle, not a secret
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(device)
    model.train()
    _freeze(model, freeze_layers)
    plan = [batches(pairs, batch_size, rng) for _ in range(epochs)]
    steps = sum(len(epoch) for epoch in plan)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.01)
    warm = max(1, int(steps * warmup))

    def rate(step: int) -> float:  # linear warm-up, then linear decay to 0
        return (step + 1) / warm if step < warm else max(0.0, (steps - step) / max(1, steps - warm))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    report = TrainingReport(folder=Path(), pairs=len(pairs), queries=len({p.qid for p in pairs}),
                            epochs=epochs, steps=steps, device=device)  # fmt: skip
    step = 0
    for epoch in plan:
        started, losses = time.perf_counter(), []
        for batch in epoch:
            queries = _encode(torch, model, tokenizer, [p.query for p in batch], max_length, device)
            docs = [p.positive for p in batch] + [p.negative for p in batch if p.negative is not None]
            documents = _encode(torch, model, tokenizer, docs, max_length, device)
            scores = queries @ documents.T * scale
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch), device=device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None:
                progress(step, steps, losses[-1])
        report.seconds_per_epoch.append(time.perf_counter() - started)
        report.loss_per_epoch.append(sum(losses) / len(losses))
        log.info("epoch %d: loss %.4f in %.1f s", len(report.loss_per_epoch), report.loss_per_epoch[-1],
                 report.seconds_per_epoch[-1])  # fmt: skip

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    stem = name or (
        MINILM_NAME if base.strip().lower() == "minilm" else re.sub(r"-ft-\d{8}-\d{6}$", "", folder.name)
    )
    target = Path(out_dir) / f"{stem}-ft-{stamp}"
    target.mkdir(parents=True, exist_ok=False)
    model.eval()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    report.folder = target
    card = {
        "base": str(folder),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": data_fingerprint(pairs),
        "loss": "multiple negatives ranking (in-batch + one hard negative)",
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "warmup": warmup,
            "scale": scale,
            "max_length": max_length,
            "freeze_layers": freeze_layers,
            "seed": seed,
        },
        **report.summary(),
    }
    (target / MODEL_CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    if any(not math.isfinite(x) for x in report.loss_per_epoch):
        raise ValidationError(f"training diverged (loss {report.loss_per_epoch}); model left in {target}")
    return report


__all__ = [
    "MINED_DEPTH",
    "MODEL_CARD",
    "TrainingPair",
    "TrainingReport",
    "base_folder",
    "batches",
    "bm25_service",
    "catalogue_texts",
    "mine_negatives",
    "train",
    "training_pairs",
]
