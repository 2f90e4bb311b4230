#!/usr/bin/env bash
# The operator's whole life as a new user lives it, each step timed: install
# the operator (its controller as a pod of its image), a Development cluster
# on the older OpenBao, write a secret, back it up, change it and restore the
# backup, upgrade to the newer OpenBao, uninstall and check that nothing is
# left. Installs and builds what is missing first (like ci/up.sh). Ctrl-C at
# any moment removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${OPENBAO_OPERATOR_CACHE:-$HOME/.cache/openbao-operator}/target}"
started=$SECONDS
bash ci/local-build.sh golden-path
story=$SECONDS
"$CARGO_TARGET_DIR/local/golden-path"
printf '\n[golden-path] the story took %s s; %s s with the installs and builds\n' \
    "$((SECONDS - story))" "$((SECONDS - started))"
