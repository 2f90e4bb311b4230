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
bash ci/install-test-env.sh
cargo build --quiet --locked --package controller --bin controller --package backup --bin backup --package restore --bin restore --package upgrade --bin upgrade
exec cargo run --quiet --locked --package test-support --bin devenv -- "$@"
