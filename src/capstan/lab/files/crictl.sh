#!/bin/sh
# crictl for capstan lab hosts (version @VERSION@ in the archive's name).
# Debian 12 does not package cri-tools and nothing can be downloaded here, so this small script stands
# in for the few crictl calls a cluster lifecycle makes, using containerd's own `ctr` on the k8s.io
# namespace. Lab hosts run no CRI pods, so the pod and container removal commands have nothing to do.
set -eu
ctr_k8s() { ctr --namespace k8s.io "$@"; }
cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  --version|-v) echo "crictl version v@VERSION@" ;;
  version)
    echo "Version:  0.1.0"
    echo "RuntimeName:  containerd"
    echo "RuntimeVersion:  $(containerd --version | awk '{print $3}')"
    echo "RuntimeApiVersion:  v1" ;;
  info) ctr version ;;
  images|img) ctr_k8s images ls "$@" ;;
  ps) ctr_k8s containers ls ;;
  pods) ;;  # no CRI pod sandboxes in a lab host
  stopp|rmp|stop|rm) ;;  # nothing to stop or remove (see pods)
  config) ;;
  *) echo "crictl (capstan lab): '$cmd' is not available in lab hosts" >&2; exit 1 ;;
esac
