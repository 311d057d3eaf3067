"""Celery workers of hybrid-search: the app (``workers.app``) and its thin tasks (``workers.tasks``).

Start them with ``hybrid-search workers`` (or ``celery -A workers.app worker``).
"""
