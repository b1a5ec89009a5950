"""Objects a real apiserver creates for itself once storage answers.

The system namespaces (default, kube-system, kube-public, kube-node-lease), the ``kubernetes``
Service in default with the first IP of --service-cluster-ip-range and its Endpoints listing this
server's advertise address (SIMPLIFICATION: addresses are only added, never reconciled away), the
two built-in PriorityClasses that kubeadm's static pods name, and the default ClusterRoles kubeadm's
RBAC bindings refer to (``rbac.DEFAULT_CLUSTER_ROLES``; created when missing, not reconciled).
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import threading
from typing import Any

from . import rbac
from .registry import Registry
from .resources import by_name, core
from .status import ApiStatus
from .storage import StorageError

log = logging.getLogger("kube-apiserver")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _ensure(reg: Registry, group: str, plural: str, namespace: str, obj: dict[str, Any]) -> None:
    try:
        reg.create(by_name(group, plural), namespace, obj)
    except ApiStatus as exc:
        if exc.reason != "AlreadyExists":
            raise


def _endpoints(reg: Registry, address: str, port: int) -> None:
    eps = core("endpoints")
    try:
        obj = reg.get(eps, "default", "kubernetes")
    except ApiStatus:
        obj = {
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}
        }
        obj["subsets"] = [{"addresses": [], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        obj = reg.create(eps, "default", obj)
    subsets = obj.setdefault("subsets", [{"addresses": [], "ports": []}])
    if not subsets:
        subsets.append({"addresses": [], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
    addrs = subsets[0].setdefault("addresses", [])
    if not any(a.get("ip") == address for a in addrs):
        addrs.append({"ip": address})
        reg.update(eps, "default", "kubernetes", obj)


def bootstrap(reg: Registry, advertise: str, port: int) -> None:
    for ns in SYSTEM_NAMESPACES:
        _ensure(reg, "", "namespaces", "", {"metadata": {"name": ns}})
    if reg.service_range is not None:
        first = str(next(reg.service_range.hosts()))
        svc = {
            "metadata": {
                "name": "kubernetes",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": first,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
        }
        _ensure(reg, "", "services", "default", svc)
    try:
        ipaddress.ip_address(advertise)
        _endpoints(reg, advertise, port)
    except ValueError:
        pass
    for name, value in (("system-node-critical", 2000001000), ("system-cluster-critical", 2000000000)):
        pc = {
            "metadata": {"name": name},
            "value": value,
            "description": f"Used for {name.split('-')[1]} critical pods.",
        }
        _ensure(reg, "scheduling.k8s.io", "priorityclasses", "", pc)
    for role in rbac.DEFAULT_CLUSTER_ROLES:
        _ensure(reg, rbac.GROUP, "clusterroles", "", copy.deepcopy(role))
    for binding in rbac.DEFAULT_CLUSTER_ROLE_BINDINGS:
        _ensure(reg, rbac.GROUP, "clusterrolebindings", "", copy.deepcopy(binding))


def bootstrap_until_done(reg: Registry, advertise: str, port: int, stop: threading.Event) -> None:
    """Retry ``bootstrap`` every second until storage answers (etcd may start after the apiserver)."""
    while not stop.is_set():
        try:
            bootstrap(reg, advertise, port)
            log.info("system namespaces and default objects are in place")
            return
        except (StorageError, ApiStatus, ValueError) as exc:
            log.warning("bootstrap objects not yet created: %s", exc)
        stop.wait(1.0)
