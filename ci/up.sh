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
# Build output in the tool cache, shared with ci/test.sh and ci/golden-path.sh.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${OPENBAO_OPERATOR_CACHE:-$HOME/.cache/openbao-operator}/target}"
bash ci/local-build.sh devenv
printf '\n[devenv] starting the environment (Ctrl-C at any time stops it and removes everything)\n'
exec "$CARGO_TARGET_DIR/local/devenv" "$@"
