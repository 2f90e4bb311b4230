#!/usr/bin/env bash
# The README's test command: installs the test environment (cached), then runs
# formatting, lints, the generated-file check and the whole test suite against
# real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# Rust build output lives in the tool cache, outside the clone, so a fresh
# clone (CI) reuses the dependencies' builds; CARGO_TARGET_DIR overrides.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${OPENBAO_OPERATOR_CACHE:-$HOME/.cache/openbao-operator}/target}"

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "install the test environment"
bash ci/install-test-env.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated files are current"
cargo xtask gen --check

step "build the tests"
cargo nextest run --workspace --locked --no-run

# From the binaries the tests were built with (no second build).
step "images (dev profile: the e2e controller pod and Jobs run them)"
cargo xtask images --profile dev --no-build

step "tests"
cargo nextest run --workspace --locked --no-fail-fast

printf '\nci/test.sh finished in %ss\n' "$((SECONDS - started))"
