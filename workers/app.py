"""The worker's Celery app: ``celery -A workers.app worker`` (``hybrid-search workers`` runs this)."""

from __future__ import annotations

from hybrid_search.ingest.queue import make_celery
from hybrid_search.settings import get_settings

# Celery needs its app at import in the worker entry module; settings are read from the environment here.
app = make_celery(get_settings())
app.conf.include = ["workers.tasks"]
