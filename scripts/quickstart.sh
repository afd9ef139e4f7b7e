#!/usr/bin/env bash
# Set up (idempotent), then run a DPO job end to end in the local cluster on builtin://tiny:
# emulated API server + the real operator + the trainer as a local process. Prints the final status,
# the adapter path and the plot path.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec python -m align_localcluster.quickstart "$@"
