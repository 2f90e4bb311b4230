#!/usr/bin/env bash
# The README's run command: installs what is missing, then brings up a local
# Kubernetes control plane with the operator's CRDs and its controller, applies
# the Development sample OpenBaoCluster, waits until the controller has made
# it a 3-node OpenBao Raft cluster and its first backup has reached a local S3
# server (the backup and restore-drill Jobs run the workspace's `backup` and
# `restore` binaries), prints how to reach it, and removes everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
started=$SECONDS
step() { printf '\n[up] %s\n' "$*"; }

step "installing the test servers that are missing (etcd, Kubernetes, OpenBao, S3; the first run builds them, about 20 minutes on 2 cores)"
bash ci/install-test-env.sh
step "building the operator's binaries and devenv (the first build takes about 10 minutes on 2 cores; cargo shows its progress)"
cargo build --locked \
  --package controller --bin controller \
  --package backup --bin backup \
  --package restore --bin restore \
  --package upgrade --bin upgrade \
  --package test-support --bin devenv
step "built in $((SECONDS - started)) s; starting the environment (Ctrl-C at any time stops it and removes everything)"
exec cargo run --quiet --locked --package test-support --bin devenv -- "$@"
