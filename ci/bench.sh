#!/usr/bin/env bash
# Runs the project's benchmarks (not part of CI; figures depend on the
# machine). Usage: ci/bench.sh backup
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
source ci/versions.env
cache=${OPENBAO_OPERATOR_CACHE:-$HOME/.cache/openbao-operator}
bash ci/install-test-env.sh

case "${1:-}" in
  backup)
    # The baseline uploads with the AWS CLI, a standard S3 client.
    if [[ ! -x "$cache/bench-awscli/bin/aws" ]]; then
      python3 -m venv "$cache/bench-awscli"
      "$cache/bench-awscli/bin/pip" install --quiet "awscli==$AWSCLI_VERSION"
    fi
    cargo bench --locked -p backup --bench backup_vs_baseline
    ;;
  *)
    echo "usage: ci/bench.sh backup" >&2
    exit 2
    ;;
esac
