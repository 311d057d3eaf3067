#!/usr/bin/env bash
# The README's "run" command: install what is missing, start the local stack, index two products with real
# embeddings and run a hybrid query. `hybrid-search stack down` stops the stack afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-workers} source scripts/bootstrap.sh
hybrid-search demo "$@"
