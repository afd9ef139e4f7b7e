#!/usr/bin/env bash
# Set up (idempotent), then run a DPO job end to end in the local cluster on a real pretrained model,
# SmolLM2-135M-Instruct (examples/dpo-smollm2.yaml; --tiny: examples/dpo.yaml on builtin://tiny):
# emulated API server + the real operator + the trainer as a local process. Prints the final status,
# the adapter path, the plot path and the policy-vs-reference report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec python -m align_localcluster.quickstart "$@"
