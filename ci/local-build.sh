#!/usr/bin/env bash
# What ci/up.sh and ci/golden-path.sh need before they run: the test servers
# (installed once into the tool cache), the operator's images and the binary
# named by $1 (devenv or golden-path), built with the `local` profile in
# $CARGO_TARGET_DIR/local/ (the callers run it from there: `cargo run` would
# resolve features for that one package and build again). Prints each step
# and its time.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:?usage: ci/local-build.sh devenv|golden-path}
started=$SECONDS
step() { printf '\n[%s] %s\n' "$binary" "$*"; }

step "installing the test servers that are missing (etcd, Kubernetes, OpenBao, S3; the first run builds them, about 18 minutes on 2 cores)"
bash ci/install-test-env.sh
step "building $binary and the operator's images (profile local: optimized like a release; the first build takes about 14 minutes on 2 cores; cargo shows its progress)"
# One cargo invocation, so the binary and the images share every dependency.
cargo build --locked --profile local --bin "$binary" \
    --bin controller --bin backup --bin restore --bin upgrade --bin keystore-plugin
# The controller, backup, restore and upgrade pods run these images.
cargo xtask images --profile local --no-build
step "built in $((SECONDS - started)) s"
