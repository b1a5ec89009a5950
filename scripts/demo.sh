#!/usr/bin/env bash
# The main job: bring up a 5-host lab (3 control-plane+etcd, 2 workers) and create a cluster on it with
# the create-cluster flow on Prefect's embedded server; end with the report and `kubectl get nodes`.
# Needs root (the lab uses network namespaces). The lab stays up: `capstan lab down --name demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${CAPSTAN_DEMO_LAB:-demo}
BIN=.venv/bin
if ! "$BIN/capstan" lab status --name "$NAME" >/dev/null 2>&1; then
  "$BIN/capstan" lab up --name "$NAME" >/dev/null
fi
SPEC=$("$BIN/python" -c 'import sys; from capstan.lab import Lab; print(Lab.attach(sys.argv[1]).spec_path)' "$NAME")
echo "lab $NAME: $SPEC"
"$BIN/capstan" create -f "$SPEC"
KUBECONFIG_PATH="${CAPSTAN_HOME:-$HOME/.capstan}/$NAME/admin.conf"
kubectl --kubeconfig "$KUBECONFIG_PATH" get nodes -o wide
echo "the lab stays up; tear it down with: $BIN/capstan lab down --name $NAME"
