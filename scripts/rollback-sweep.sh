#!/usr/bin/env bash
# The longer rollback run: `meshplan apply` of the sample plan (plans/linkerd.toml, stand-in
# charts, on in-process sandboxes) with a 500 at every write, a wait that never completes in
# every node (both from an empty cluster and over a previous apply) and kill -9 at 40 points;
# every run is checked to leave the cluster and the state as they were (see
# examples/rollback_sweep/sweep.rs). Prints a line per point and the counts tried and passed;
# exits 1 if any point failed. Arguments go to the sweep (--help lists them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/install-helm.sh --pinned
export PATH="$root/.tools/bin:$PATH"

cargo build --quiet --bin meshplan --example rollback_sweep
exec target/debug/examples/rollback_sweep "$@"
