#!/usr/bin/env bash
# The README's "run" command: install what is missing, then `hybrid-search run`: start the local stack, ingest the
# catalogue through the workers (progress bar) and serve the search page, printing its URL. Ctrl-C stops serving;
# `hybrid-search stack down` stops the stack. Arguments go to `hybrid-search run` (e.g. --catalog DIR); without
# --catalog or HYBRID_SEARCH_CATALOG, the Luma catalogue beside this repository (../shared/datasets/luma) is used
# when present, else `run` downloads the public Luma sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-workers,api,voice} source scripts/bootstrap.sh
if [ -z "${HYBRID_SEARCH_CATALOG:-}" ] && [[ " $* " != *" --catalog"* ]] && [ -f ../shared/datasets/luma/products_flat.csv ]; then
  set -- --catalog ../shared/datasets/luma "$@"
fi
exec hybrid-search run "$@"
