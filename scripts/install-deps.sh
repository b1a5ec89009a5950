#!/usr/bin/env bash
# Installs what capstan's demo and tests need on a fresh Debian/Ubuntu machine, idempotently:
# - the host packages the lab's hosts run (their root filesystem is this machine's, as an overlay lower
#   layer, so they must be installed here before any lab host boots), and the validators the tests use;
# - a virtualenv in .venv with capstan and its test tools.
# Package post-install scripts must not start services on this machine (nginx would bind :80 here), so a
# temporary policy-rc.d denies service starts while apt runs.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # lab hosts: sshd and the real services capstan installs and runs
  openssh-server openssh-client etcd-server etcd-client haproxy nginx libnginx-mod-stream keepalived
  containerd runc containernetworking-plugins tini nftables iproute2 systemd
  # what OS preparation installs on a node (hosts have no network, so the image carries them)
  curl socat conntrack ipset ipvsadm iptables ebtables rsync tar openssl ca-certificates
  # the stand-ins run on the hosts' system Python
  python3-yaml python3-cryptography
  # platform tests: the Prefect UI checked in headless Chromium; Prefect on a throwaway PostgreSQL
  chromium fonts-dejavu-core postgresql
  make)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 2
  fi
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.capstan-installed
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
