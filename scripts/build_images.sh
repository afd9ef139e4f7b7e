#!/usr/bin/env bash
# Build the operator and trainer images from the repository's Dockerfiles on a machine with no registry and no
# Docker engine: Debian's podman + runc, a local Debian base made with debootstrap, and a wheelhouse prepared on
# the host (pip wheel; the CPU torch wheel that lies on this kind of machine), installed in the image with
# --no-index. This is how the images are verified in CI; the defaults of the Dockerfiles stay the real bases
# (CUDA runtime for the trainer, python:3.11-slim for the operator).
#
#   scripts/build_images.sh            build both (cached: a rebuild only re-runs what changed)
#   scripts/build_images.sh trainer    or: operator
#
# Environment: ALIGN_IMAGES_CACHE (default ~/.cache/align-images: the debootstrap root, the wheelhouses),
# ALIGN_TRAINER_IMAGE / ALIGN_OPERATOR_IMAGE (tags; default localhost/align-trainer:dev, localhost/align-operator:dev).
# Prints each image's size; writes $ALIGN_IMAGES_CACHE/sizes.txt.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
C=${ALIGN_IMAGES_CACHE:-$HOME/.cache/align-images}
BASE_TAG=localhost/align-base:bookworm
TRAINER=${ALIGN_TRAINER_IMAGE:-localhost/align-trainer:dev}
OPERATOR=${ALIGN_OPERATOR_IMAGE:-localhost/align-operator:dev}
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3
# crun fails on setrlimit in nested containers such as this machine, and runc refuses --cgroups=disabled: runc, no default ulimits.
export CONTAINERS_CONF=$REPO/deploy/images/containers.conf
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
step() { echo "[images $(date +%T)] $*" >&2; }
die() { echo "[images] FAILED: $*" >&2; exit 1; }

tools() {
  command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "podman, runc and debootstrap are needed (apt-get install podman runc debootstrap)"
  step "apt: podman runc buildah debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc buildah debootstrap uidmap >/dev/null || die "apt-get install podman runc debootstrap"
}

base() {
  podman image exists "$BASE_TAG" && return 0
  if [ ! -x "$C/rootfs/usr/bin/python3" ]; then
    step "debootstrap bookworm (minbase + python3, venv, ca-certificates) into $C/rootfs"
    rm -rf "$C/rootfs" && mkdir -p "$C"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd bookworm "$C/rootfs" "$MIRROR" \
      > "$C/debootstrap.log" 2>&1 || { tail -20 "$C/debootstrap.log" >&2; die "debootstrap (log: $C/debootstrap.log)"; }
    rm -rf "$C/rootfs/var/cache/apt/archives/"*.deb "$C/rootfs/var/lib/apt/lists/"*
  fi
  step "podman import $BASE_TAG"
  tar -C "$C/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_TAG" >/dev/null || die "podman import"
}

wheelhouse() {  # name extras...
  local name=$1; shift
  local W=$C/wheelhouse-$name stamp
  local pins=$REPO/deploy/images/$name-constraints.txt
  stamp=$(cat "$pins" "$REPO/pyproject.toml" | sha256sum | cut -c1-16)-$*
  [ "$(cat "$W/.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  step "wheelhouse for $name ($*): pip wheel on the host, pinned by deploy/images/$name-constraints.txt"
  rm -rf "$W" && mkdir -p "$W"
  local reqs=()
  [ "$name" = trainer ] && reqs+=("torch==2.13.0")
  # setuptools: pip builds the project itself inside the image (build isolation, offline).
  local log=$C/pip-wheel-$name.log
  if ! "$PY" -m pip wheel -q -w "$W" -c "$pins" "${reqs[@]}" setuptools "$REPO[$*]" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2 || true
    die "pip wheel for the $name image (log: $log)"
  fi
  grep -v "^WARNING: Location" "$log" >&2 || true  # grep exits 1 when nothing is left to show
  ls "$W"/*.whl >/dev/null 2>&1 || die "pip wheel produced nothing in $W"
  rm -f "$W"/align_operator-*.whl  # the image installs the project from its own copy of the sources
  echo "$stamp" > "$W/.stamp"
}

build() {  # name dockerfile tag [build-arg ...]
  local name=$1 file=$2 tag=$3
  shift 3
  local args=()
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  step "podman build $tag ($file, offline)"
  podman build --network none --volume "$C/wheelhouse-$name:/wheelhouse:ro" \
    --build-arg BASE_IMAGE="$BASE_TAG" --build-arg PIP_INSTALL_FLAGS="--no-index --find-links=/wheelhouse" \
    "${args[@]}" \
    --label "dev.align.source=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -f "$REPO/$file" -t "$tag" "$REPO" > "$C/build-$name.log" 2>&1 \
    || { tail -30 "$C/build-$name.log" >&2; die "podman build $tag (log: $C/build-$name.log)"; }
  local size
  size=$(podman image inspect --format '{{.Size}}' "$tag")
  { grep -v "^$name " "$C/sizes.txt" 2>/dev/null || true; echo "$name $tag $((size / 1000000)) MB"; } > "$C/sizes.tmp"
  mv "$C/sizes.tmp" "$C/sizes.txt"
  echo "$name $tag $((size / 1000000)) MB" >&2
}

mkdir -p "$C"
tools
base
what=${1:-all}
if [ "$what" = all ] || [ "$what" = operator ]; then
  "$REPO/scripts/vendor_console_assets.sh"  # the console's uPlot (npm, here: the image build is offline)
  wheelhouse operator operator; build operator operator/Dockerfile "$OPERATOR"
fi
if [ "$what" = all ] || [ "$what" = trainer ]; then
  # CPU build: without the Dockerfile's default liger extra (Triton kernels need CUDA; this machine has none)
  TRAINER_EXTRAS=trainer,gpu
  wheelhouse trainer "$TRAINER_EXTRAS"
  build trainer trainer_image/Dockerfile "$TRAINER" TRAINER_EXTRAS="$TRAINER_EXTRAS"
fi
