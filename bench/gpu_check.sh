#!/usr/bin/env bash
# GPU check after install (one GPU, 3-5 minutes): sft and dpo with LoRA in bf16 and 4-bit QLoRA (+ flash
# attention when flash-attn is installed) on a ~0.5B model; tokens/s, peak GPU memory, MFU, PASS/FAIL each.
#   bench/gpu_check.sh            # from the repository root, in the environment the trainer is installed in
# Exit codes: 0 all passed, 1 a feature failed (CUDA present but a path broke), 3 no CUDA device.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
export PYTHONPATH="$root/api:$root/operator:$root/trainer_image${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false ALIGN_LOG_LEVEL="${ALIGN_LOG_LEVEL:-WARNING}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
