"""The ``hybrid-search`` command line: thin commands over the library."""

from hybrid_search.cli.app import app, main

__all__ = ["app", "main"]
