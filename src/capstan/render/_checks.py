"""Checks on spec values that end up inside rendered files, each naming the spec path it rejects.

The spec models accept some free-form strings (labels, registry names, flag names, an interface name).
Rendering puts them into places with stricter grammars (a kubelet flag, a directory name, a keepalived
keyword), so they are checked here, where the grammar is known, rather than trusting the quoting alone:
a label with a comma would silently split ``--node-labels``, and a registry name with ``/`` would write
outside ``/etc/containerd/certs.d``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from capstan.errors import RenderError
from capstan.spec.models import Cluster, Host

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REGISTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")
_URL = re.compile(r"^https?://[^\s\"'\\{}]+$")
_IFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$")
_FLAG = re.compile(r"^[a-z0-9][a-z0-9.-]*$")

# Labels in the kubernetes.io / k8s.io namespaces that a kubelet may still set on itself (NodeRestriction);
# any other label in those namespaces makes the kubelet refuse to start.
_KUBELET_ALLOWED_KEYS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    }
)
_KUBELET_ALLOWED_PREFIXES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def host_path(cluster: Cluster, host: Host) -> str:
    return f"spec.hosts[{cluster.hosts.index(host)}]"


def _qualified_name_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


def _restricted(key: str) -> bool:
    prefix = key.rpartition("/")[0]
    in_k8s = any(prefix == d or prefix.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
    if not in_k8s or key in _KUBELET_ALLOWED_KEYS:
        return False
    return not any(prefix == p or prefix.endswith("." + p) for p in _KUBELET_ALLOWED_PREFIXES)


def check_host(cluster: Cluster, host: Host) -> None:
    """Labels and taints of ``host`` fit Kubernetes' grammar and what a kubelet may set on itself."""
    where = host_path(cluster, host)
    for key, value in host.labels.items():
        if not _qualified_name_ok(key):
            raise RenderError(f"{where}.labels: {key!r} is not a valid label key")
        if value and not _LABEL_NAME.match(value):
            raise RenderError(f"{where}.labels[{key!r}]: {value!r} is not a valid label value")
        if _restricted(key):
            raise RenderError(
                f"{where}.labels: {key!r} is in a namespace the kubelet may not set on itself "
                "(NodeRestriction); use another prefix"
            )
    for i, taint in enumerate(host.taints):
        if not _qualified_name_ok(taint.key):
            raise RenderError(f"{where}.taints[{i}]: {taint.key!r} is not a valid taint key")
        if taint.value and not _LABEL_NAME.match(taint.value):
            raise RenderError(f"{where}.taints[{i}]: {taint.value!r} is not a valid taint value")


def check_registry(name: str, path: str) -> None:
    if not _REGISTRY.match(name):
        raise RenderError(f"{path}: {name!r} is not a registry host[:port]")


def check_url(url: str, path: str) -> None:
    if not _URL.match(url):
        raise RenderError(f"{path}: {url!r} is not a plain http(s) URL")


def check_interface(name: str, path: str) -> None:
    if not _IFACE.match(name):
        raise RenderError(f"{path}: {name!r} is not a network interface name")


def check_flags(flags: Mapping[str, str], path: str) -> None:
    for name in flags:
        if not _FLAG.match(name):
            raise RenderError(f"{path}: {name!r} is not a flag name (lowercase, without leading dashes)")
