"""``python -m hybrid_search.cli``: the same commands as ``hybrid-search``."""

from hybrid_search.cli.app import main

main()
