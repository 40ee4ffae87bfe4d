#!/usr/bin/env bash
# Builds the real-cluster tier's tools from their pinned Go modules, once, into
# a cache folder outside the repository:
#
#   ${MESH_REALK8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-realk8s}/<key>/bin
#
# <key> is a hash of the four tool modules (go.mod + go.sum) and the Go
# version, so changing a pin builds into a new folder and an unchanged pin
# reuses the old one (CI on the same machine reuses a developer's build).
# The older Istio pin (istio-old/, for upgrade tests) builds into
# <key>/bin/istio-old, rebuilt when its stamp file names another version.
# Prints the bin folder on its last line of stdout; everything else goes to
# stderr. Idempotent: a tool already built is skipped.
#
# Usage: tests/realk8s/build.sh            build what is missing, print the bin folder
#        tests/realk8s/build.sh --print    print the bin folder, build nothing
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
say() { printf '%s\n' "realk8s: $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  say "Go is not installed: the real-cluster tier builds kube-apiserver, kwok and istioctl from Go modules."
  say "Install Go 1.24 or newer (https://go.dev/doc/install, or Debian's golang-go), then run: bash tests/realk8s/build.sh"
  exit 1
fi

key="$( { go env GOVERSION; for m in kubernetes etcd kwok istio; do cat "$here/$m/go.mod" "$here/$m/go.sum"; done; } | sha256sum | cut -c1-16)"
cache="${MESH_REALK8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-realk8s}"
bin="$cache/$key/bin"

if [[ "${1:-}" == "--print" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"

# The version of each pin, read from its go.mod (one place to change a pin).
modver() { awk -v m="$2" '($1=="require" && $2==m) {print $3; exit} ($1==m && $2 ~ /^v/) {print $2; exit}' "$here/$1/go.mod"; }
k8s_version="$(modver kubernetes k8s.io/kubernetes)"
etcd_version="$(modver etcd go.etcd.io/etcd/server/v3)"
kwok_version="$(modver kwok sigs.k8s.io/kwok)"

# build MODULE TOOL VERSION OUT PACKAGE [LDFLAGS]
build() {
  local module="$1" tool="$2" version="$3" out="$4" pkg="$5" ldflags="${6:-}"
  if [[ -x "$bin/$out" ]]; then
    say "$tool $version: already built ($bin/$out)"
    return 0
  fi
  say "building $tool $version (module tests/realk8s/$module) ..."
  local start=$SECONDS
  if ! (cd "$here/$module" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$out.partial" "$pkg"); then
    rm -f "$bin/$out.partial"
    say "FAILED to build $tool $version from $pkg."
    say "If a module download failed, check that the Go module proxy is reachable (go env GOPROXY)."
    say "Retry with: bash tests/realk8s/build.sh"
    exit 1
  fi
  mv "$bin/$out.partial" "$bin/$out"
  say "built $tool $version in $((SECONDS - start)) s"
}

total_start=$SECONDS

minor="${k8s_version#v1.}"; minor="${minor%%.*}"
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kubernetes "$t" "$k8s_version" "$t" "k8s.io/kubernetes/cmd/$t" "$k8s_ldflags"
done

build etcd etcd "$etcd_version" etcd go.etcd.io/etcd/server/v3

for t in kwok kwokctl; do
  build kwok "$t" "$kwok_version" "$t" "sigs.k8s.io/kwok/cmd/$t" "-X sigs.k8s.io/kwok/pkg/consts.Version=$kwok_version"
done

# build_istio MODULE SUBDIR: istioctl and pilot-discovery of one Istio pin into
# $bin/SUBDIR. Both pins are master builds of one release line (their VERSION
# says the same minor), so each is named honestly after its VERSION and its
# commit date, e.g. 1.31-dev.20260827: that tells the two builds apart for
# `istio_version`, and "1.31" still matches either. A stamp file records the
# version a folder was built as; a different one rebuilds it.
build_istio() {
  local module="$1" sub="$2"
  local version; version="$(modver "$module" istio.io/istio)"
  local dir="$bin${sub:+/$sub}"
  local date="${version#v0.0.0-}"; date="${date:0:8}"
  local istio_dir
  istio_dir="$(cd "$here/$module" && go mod download -json istio.io/istio | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  if [[ -z "$istio_dir" ]]; then
    say "FAILED to download istio.io/istio $version. Retry with: bash tests/realk8s/build.sh"
    exit 1
  fi
  local name; name="$(cat "$istio_dir/VERSION")-dev.$date"
  mkdir -p "$dir"
  if [[ "$(cat "$dir/istio-version" 2>/dev/null)" != "$name $version" ]]; then
    rm -f "$dir/istioctl" "$dir/pilot-discovery"
  fi
  local ldflags="-X istio.io/istio/pkg/version.buildVersion=$name -X istio.io/istio/pkg/version.buildStatus=Clean -X istio.io/istio/pkg/version.buildTag=$name -X istio.io/istio/pkg/version.buildHub=docker.io/istio"
  local t pkg
  for t in istioctl pilot-discovery; do
    pkg=istioctl/cmd/istioctl
    [[ "$t" == pilot-discovery ]] && pkg=pilot/cmd/pilot-discovery
    build "$module" "$t" "$name ($version)" "${sub:+$sub/}$t" "istio.io/istio/$pkg" "$ldflags"
  done
  echo "$name $version" > "$dir/istio-version"
}

# The current Istio (every test) and an older one (the upgrade tests start
# there), built into bin/ and bin/istio-old/.
build_istio istio ""
build_istio istio-old istio-old

# kwok's default Stages (node ready with a lease heartbeat, pod ready,
# pod deletion) as one file for `kwok --config`: the kwok binary has none
# built in. Taken from the pinned kwok module, never written by hand.
if [[ ! -s "$bin/kwok-stages.yaml" ]]; then
  kwok_dir="$(cd "$here/kwok" && go mod download -json sigs.k8s.io/kwok | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  stage="$kwok_dir/kustomize/stage"
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      if [[ ! -f "$stage/$f" ]]; then
        say "FAILED: kwok $kwok_version has no stage file $f. Retry with: bash tests/realk8s/build.sh"
        exit 1
      fi
      echo "---"
      cat "$stage/$f"
    done
  } > "$bin/kwok-stages.yaml.partial"
  mv "$bin/kwok-stages.yaml.partial" "$bin/kwok-stages.yaml"
  say "wrote kwok's default stages to $bin/kwok-stages.yaml"
fi

say "all tools in $bin ($((SECONDS - total_start)) s)"
echo "$bin"
