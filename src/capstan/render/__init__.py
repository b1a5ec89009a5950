"""Rendered configuration: every file capstan puts on a host, and the addon objects it applies.

Pure functions of the cluster spec (plus the secrets and CA pin that live on the cluster): no host is
touched here, so everything is unit-tested and two renders of the same inputs are byte-identical,
which is what lets the ops layer decide "unchanged" by comparing bytes. Templates live in
``capstan/templates`` and go through one jinja2 environment (``StrictUndefined``; see ``_env``).

What :func:`render_host` returns, by role:

- every host: ``/etc/sysctl.d/99-capstan.conf``, ``/etc/modules-load.d/capstan.conf``;
- etcd hosts: ``/etc/etcd.env``, ``/etc/systemd/system/etcd.service``, ``/etc/etcdctl.env``;
- nodes (control planes and workers): containerd's ``config.toml`` (+ ``certs.d/<registry>/hosts.toml``)
  and unit, or CRI-O's drop-in, policy, mirrors and unit; ``kubelet.service`` and its kubeadm drop-in;
  ``/etc/crictl.yaml``; ``/etc/kubernetes/kubeadm-config.yaml`` (init on the first control plane,
  join elsewhere; secret);
- nodes in local-lb mode (control planes included): the balancer's config in ``/etc/kube-lb`` and
  ``kube-apiserver-lb.service``;
- control planes: ``keepalived.conf`` in vip mode; admission, authentication, encryption (secret) and
  audit configuration under ``/etc/kubernetes``.
"""

from capstan.render.addons import render_addons
from capstan.render.cni import adjust_cni_manifest
from capstan.render.etcd import etcd_env
from capstan.render.host import render_host
from capstan.render.kubeadm import ca_cert_hash, kube_proxy_config_yaml, kubelet_config_yaml
from capstan.render.lb import Backend, lb_backends
from capstan.render.system import SYSCTLS, modules_for
from capstan.render.types import RenderedFile, Secrets, new_secrets

__all__ = [
    "SYSCTLS",
    "Backend",
    "RenderedFile",
    "Secrets",
    "adjust_cni_manifest",
    "ca_cert_hash",
    "etcd_env",
    "kube_proxy_config_yaml",
    "kubelet_config_yaml",
    "lb_backends",
    "modules_for",
    "new_secrets",
    "render_addons",
    "render_host",
]
