#!/usr/bin/env bash
# The main job on a fresh machine with no cluster: build meshplan, start the local Kubernetes
# API sandbox, then plan and apply the sample Linkerd plan (plans/linkerd.toml) with the
# project's stand-in charts (plans/charts), show the result, re-plan (empty) and destroy.
#
# The sandbox runs in the background and is stopped (SIGTERM, by its pid) at the end, also
# when a step fails. Everything it writes goes to a temporary directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n== %s\n' "$*"; }

step "build meshplan"
cargo build --quiet
meshplan="$root/target/debug/meshplan"

step "install the pinned helm (when missing)"
bash scripts/install-helm.sh --pinned
export PATH="$root/.tools/bin:$PATH"

tmp="$(mktemp -d)"
sandbox_pid=""
cleanup() {
    if [ -n "$sandbox_pid" ] && kill -0 "$sandbox_pid" 2>/dev/null; then
        kill -TERM "$sandbox_pid"
        wait "$sandbox_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

step "start the sandbox (a local Kubernetes API on 127.0.0.1)"
"$meshplan" sandbox serve --port 0 --kubeconfig "$tmp/kubeconfig" --data "$tmp/data" \
    >"$tmp/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 1 100); do
    [ -s "$tmp/kubeconfig" ] && break
    if ! kill -0 "$sandbox_pid" 2>/dev/null; then
        cat "$tmp/sandbox.log" >&2
        echo "the sandbox stopped before writing its kubeconfig" >&2
        exit 1
    fi
    sleep 0.1
done
[ -s "$tmp/kubeconfig" ] || { echo "no kubeconfig after 10 s" >&2; exit 1; }
echo "sandbox pid $sandbox_pid, kubeconfig $tmp/kubeconfig"

common=(--kubeconfig "$tmp/kubeconfig"
        --repo-dir linkerd=plans/charts --repo-dir jetstack=plans/charts)
linkerd=(plans/linkerd.toml --state "$tmp/state/linkerd" "${common[@]}")

step "what a k3s cluster with kube-prometheus-stack already has (plans/sandbox-cluster.toml)"
"$meshplan" apply plans/sandbox-cluster.toml --state "$tmp/state/sandbox-cluster" \
    --kubeconfig "$tmp/kubeconfig" --auto-approve

step "meshplan plan plans/linkerd.toml"
"$meshplan" plan "${linkerd[@]}"

step "meshplan apply plans/linkerd.toml --auto-approve"
"$meshplan" apply "${linkerd[@]}" --auto-approve

show() {
    if command -v kubectl >/dev/null 2>&1; then
        KUBECACHEDIR="$tmp/kube-cache" kubectl --kubeconfig "$tmp/kubeconfig" get deploy -A
    fi
    echo "objects meshplan records, per node:"
    "$meshplan" state list plans/linkerd.toml --state "$tmp/state/linkerd" \
        | awk 'NR > 1 { n[$1]++ } END { for (k in n) printf "  %-32s %d\n", k, n[k] }' | sort
}

step "the result"
show

step "re-plan: nothing to change (--detailed-exitcode exits 0)"
"$meshplan" plan "${linkerd[@]}" --detailed-exitcode

step "destroy"
# manifest.root_ca is prevent_destroy (the mesh's root of trust), so a plain destroy is
# refused; show that, then destroy Linkerd (the CRDs, the namespace and everything that
# depends on them) and keep cert-manager and the CA chain.
if "$meshplan" destroy "${linkerd[@]}" --auto-approve; then
    echo "destroy was expected to refuse: root_ca is prevent_destroy" >&2
    exit 1
fi
"$meshplan" destroy "${linkerd[@]}" --auto-approve \
    --target helm.linkerd_crds --target manifest.linkerd_namespace
show

step "done"
