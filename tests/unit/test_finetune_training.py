"""Fine-tuning: training pairs and batches (pure), and a short real training run of MiniLM on CPU."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from hybrid_search.encoders import get_encoder
from hybrid_search.errors import ValidationError
from hybrid_search.evaluation.finetune import MODEL_CARD, TrainingPair, batches, train, training_pairs

TEXTS = {
    "p1": "Copper pipe 3/4 in. x 10 ft.",
    "p2": "PVC pipe 1/2 in. x 10 ft.",
    "p3": "Cordless drill 18V",
    "p4": "Drill bit set, 20 pieces",
    "p5": "Garden hose 50 ft.",
}
QUERIES = {"q1": "copper pipe", "q2": "cordless drill", "q3": "hose", "q4": "no judged products"}
GRADES = {
    "q1": {"p1": 3.0, "p2": 1.67},
    "q2": {"p3": 2.67, "p4": 2.33, "p1": 1.0},
    "q3": {"p5": 2.33, "unknown": 3.0},
    "q4": {"p2": 1.0},
}


@pytest.mark.unit
def test_pairs_take_relevant_products_and_prefer_judged_negatives() -> None:
    pairs = training_pairs(QUERIES, GRADES, TEXTS, relevant_grade=2.33, mined={"q3": ["p5", "p4"]})
    got = {(p.qid, p.positive_id, p.negative) for p in pairs}
    assert got == {
        ("q1", "p1", TEXTS["p2"]),  # judged 1.67 < 2.33: the judged negative
        ("q2", "p3", TEXTS["p1"]),
        ("q2", "p4", TEXTS["p1"]),
        ("q3", "p5", TEXTS["p4"]),  # no judged negative: BM25's first non-relevant hit (p5 is relevant)
    }  # "unknown" has no text; q4 has nothing relevant


@pytest.mark.unit
def test_pairs_per_query_keeps_the_best_graded_and_negative_grade_bounds_negatives() -> None:
    pairs = training_pairs(QUERIES, GRADES, TEXTS, relevant_grade=2.33, per_query=1, negative_grade=1.5)
    assert [(p.qid, p.positive_id) for p in pairs] == [("q1", "p1"), ("q2", "p3"), ("q3", "p5")]
    assert pairs[0].negative is None  # p2 (1.67) is not below 1.5
    assert pairs[1].negative == TEXTS["p1"]
    assert pairs[2].negative is None  # nothing mined given


@pytest.mark.unit
def test_batches_never_repeat_a_query_or_product_and_use_every_pair_once() -> None:
    pairs = [TrainingPair(f"q{n % 7}", f"q{n % 7}", f"d{n % 5}", f"text {n}") for n in range(60)]
    made = batches(pairs, 4, random.Random(1))
    assert sorted(id(p) for b in made for p in b) == sorted(id(p) for p in pairs)
    for batch in made:
        assert len(batch) <= 4
        assert len({p.qid for p in batch}) == len(batch)
        assert len({p.positive_id for p in batch}) == len(batch)
    with pytest.raises(ValidationError, match="at least 2"):
        batches(pairs, 1, random.Random(1))


@pytest.mark.unit
def test_train_refuses_no_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no training pairs"):
        train([], base="minilm", out_dir=tmp_path)


@pytest.mark.models
def test_training_pulls_queries_towards_their_products_and_writes_a_versioned_folder(tmp_path: Path) -> None:
    texts = {f"p{n}": t for n, t in enumerate([
        "Copper pipe 3/4 in. x 10 ft.", "Cordless drill 18V lithium", "Garden hose 50 ft. green",
        "LED light bulb 60W warm white", "Wood screws #8 x 1 in. 100 pack", "Paint roller 9 in. cover",
        "Ceiling fan 52 in. with light", "Toilet flapper universal",
    ])}  # fmt: skip
    queries = {f"q{n}": q for n, q in enumerate([
        "plumbing tube", "power tool", "watering", "lamp", "fasteners", "decorating", "air circulation",
        "bathroom repair",
    ])}  # fmt: skip
    grades = {f"q{n}": {f"p{n}": 3.0, f"p{(n + 1) % 8}": 1.0} for n in range(8)}
    pairs = training_pairs(queries, grades, texts, relevant_grade=2.33)
    base = get_encoder("minilm")

    def margin(encoder_spec: str) -> float:
        encoder = get_encoder(encoder_spec)
        q = np.asarray(encoder.embed_documents([queries[f"q{n}"] for n in range(8)]))
        d = np.asarray(encoder.embed_documents([texts[f"p{n}"] for n in range(8)]))
        sims = q @ d.T
        return float(np.mean([sims[n, n] - np.delete(sims[n], n).max() for n in range(8)]))

    report = train(pairs, base="minilm", out_dir=tmp_path, epochs=4, batch_size=8, learning_rate=1e-4,
                   max_length=16, freeze_layers=4, device="cpu", name="tiny")  # fmt: skip
    assert report.folder.parent == tmp_path and report.folder.name.startswith("tiny-ft-")
    assert report.steps == 4 and len(report.loss_per_epoch) == 4
    assert report.loss_per_epoch[-1] < report.loss_per_epoch[0]
    card = json.loads((report.folder / MODEL_CARD).read_text())
    assert card["hyperparameters"]["freeze_layers"] == 4 and card["pairs"] == 8
    tuned = get_encoder(f"hf-text:{report.folder}")
    assert tuned.version != base.version  # a new model version: an index built with it records it
    assert margin(f"hf-text:{report.folder}") > margin("minilm")
    # frozen layers did not move
    from transformers import AutoModel

    before = AutoModel.from_pretrained(str(base.folder), local_files_only=True)  # type: ignore[attr-defined]
    after = AutoModel.from_pretrained(str(report.folder), local_files_only=True)
    assert np.array_equal(
        before.encoder.layer[3].output.dense.weight.detach().numpy(),
        after.encoder.layer[3].output.dense.weight.detach().numpy(),
    )
    assert not np.array_equal(
        before.encoder.layer[5].output.dense.weight.detach().numpy(),
        after.encoder.layer[5].output.dense.weight.detach().numpy(),
    )
