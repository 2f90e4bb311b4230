#!/usr/bin/env bash
# The README's run command: installs what is missing, then brings up a local
# Kubernetes control plane with the operator's CRDs and a real 3-node OpenBao
# Raft cluster, prints how to reach them, and removes everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash ci/install-test-env.sh
exec cargo run --quiet --locked --package test-support --bin devenv -- "$@"
