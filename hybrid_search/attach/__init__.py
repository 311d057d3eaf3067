"""Attach the layer to a shop's existing index: plan what it needs, apply it, detach, reindex for k-NN.

    plan = plan_attachment(engine, load_attach_config(path), settings)   # reads only
    print(plan.render())
    apply_attachment(engine, plan)                                        # hs_ fields + _meta record
    detach(engine, plan.config, strip=True)
    reindex_attached(engine, plan, confirm)                               # OpenSearch without index.knn

:mod:`.plan` reads the index and finds every risk; :mod:`.admin` makes the few writes the plan describes.
"""

from __future__ import annotations

from hybrid_search.attach.admin import (
    ApplyResult,
    DetachResult,
    ReindexResult,
    apply_attachment,
    detach,
    reindex_attached,
)
from hybrid_search.attach.plan import AttachPlan, KnnPlan, plan_attachment

__all__ = [
    "ApplyResult",
    "AttachPlan",
    "DetachResult",
    "KnnPlan",
    "ReindexResult",
    "apply_attachment",
    "detach",
    "plan_attachment",
    "reindex_attached",
]
