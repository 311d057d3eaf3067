"""Ingestion: the Celery queue, jobs and their tracking, and the pipeline a worker runs on each batch."""
