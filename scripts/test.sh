#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: unit, integration (operator over HTTP, trainer on the
# tiny model) and end to end. Slow tests are included; pass -m "not slow" for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec python -m pytest -p no:cacheprovider -n 2 --dist loadfile "$@"
