#!/usr/bin/env bash
# The README's run command: installs what is missing, then brings up a local
# Kubernetes control plane, installs the operator as a user would
# (manifests/overlays/development: CRDs, RBAC, the controller Deployment, whose
# pod runs the controller image), applies the Development sample OpenBaoCluster,
# waits until the controller pod has made it a 3-node OpenBao Raft cluster and
# its first backup has reached a local S3 server (the backup and restore-drill
# Jobs run the backup and restore images), prints how to reach it, and removes
# everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
started=$SECONDS
step() { printf '\n[up] %s\n' "$*"; }

step "installing the test servers that are missing (etcd, Kubernetes, OpenBao, S3; the first run builds them, about 20 minutes on 2 cores)"
bash ci/install-test-env.sh
step "building the operator's images and devenv (the first build takes about 10 minutes on 2 cores; cargo shows its progress)"
cargo build --locked --package test-support --bin devenv
# The controller, backup, restore and upgrade run from these images (dev
# profile: unoptimized binaries, quick to build; `cargo xtask images` makes
# the release ones).
cargo xtask images --profile dev
step "built in $((SECONDS - started)) s; starting the environment (Ctrl-C at any time stops it and removes everything)"
exec cargo run --quiet --locked --package test-support --bin devenv -- "$@"
