#!/usr/bin/env bash
# Runs meshplan's whole test suite on a fresh machine: installs the pinned helm when it is
# missing, then runs every unit and integration test with cargo-nextest (each test in its own
# process; integration tests start their own sandbox API servers on 127.0.0.1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/install-helm.sh --pinned
export PATH="$root/.tools/bin:$PATH"

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

cargo nextest run --workspace --all-targets --no-fail-fast "$@"
