#!/usr/bin/env bash
# Regenerates providers/assets/gateway-api-<version>-standard.yaml: the
# Gateway API CRDs (standard channel) that `P/gateway-api-crds` installs in
# an ambient mesh's clusters, from the Go module sigs.k8s.io/gateway-api at
# the version the pinned Istio's go.mod requires (Go's module proxy; no
# other download). The safe-upgrades ValidatingAdmissionPolicy of the same
# folder is left out: it is not a CRD, and it refuses some downgrades
# outright (docs/ambient.md).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-v1.6.0}"
dir=$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@${version}" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
[[ -d "$dir/config/crd/standard" ]] || { echo "no config/crd/standard in $dir" >&2; exit 1; }
out="providers/assets/gateway-api-${version}-standard.yaml"
for f in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
  case "$f" in *vap_*) continue ;; esac
  echo "---"
  cat "$f"
done > "$out"
echo "wrote $out ($(grep -c '^kind: CustomResourceDefinition' "$out") CRDs)"
