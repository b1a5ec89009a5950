"""Cross-field validation of a parsed Cluster.

Field-level rules live on the pydantic models; the rules here look at several fields at once (odd etcd
count, overlapping networks, duplicates, the supported matrix, known checksums). Each returns a
``SpecError`` whose path is the YAML location a user must edit, in camelCase as written in the file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator

from capstan.errors import SpecError
from capstan.spec.matrix import Combination, why_unsupported
from capstan.spec.models import Cluster

Check = Callable[[Cluster], Iterator[SpecError]]


def _hp(i: int, field: str) -> str:
    return f"spec.hosts[{i}].{field}"


def check_roles(c: Cluster) -> Iterator[SpecError]:
    hosts = c.spec.hosts
    if not c.control_planes:
        yield SpecError("spec.hosts", "no host has the control-plane role; at least one is required")
    etcd = [i for i, h in enumerate(hosts) if "etcd" in h.roles]
    if not etcd:
        yield SpecError("spec.hosts", "no host has the etcd role; etcd needs 1, 3 or 5 members")
    elif len(etcd) % 2 == 0:
        names = ", ".join(hosts[i].name for i in etcd)
        yield SpecError(
            _hp(etcd[-1], "roles"),
            f"{len(etcd)} etcd members ({names}): etcd needs an odd number to keep quorum",
        )


def check_duplicates(c: Cluster) -> Iterator[SpecError]:
    seen_name: dict[str, int] = {}
    seen_addr: dict[tuple[str, int], int] = {}
    seen_ip: dict[str, int] = {}
    seen_etcd: dict[str, int] = {}
    for i, h in enumerate(c.spec.hosts):
        if h.name in seen_name:
            yield SpecError(
                _hp(i, "name"), f"duplicate host name {h.name!r} (also hosts[{seen_name[h.name]}])"
            )
        seen_name.setdefault(h.name, i)
        key = (h.address, h.port or c.spec.ssh.port)
        if key in seen_addr:
            yield SpecError(
                _hp(i, "address"), f"duplicate address {h.address} (also hosts[{seen_addr[key]}])"
            )
        seen_addr.setdefault(key, i)
        if h.bind_ip in seen_ip:
            yield SpecError(_hp(i, "ip"), f"duplicate ip {h.bind_ip} (also hosts[{seen_ip[h.bind_ip]}])")
        seen_ip.setdefault(h.bind_ip, i)
        if "etcd" in h.roles:
            if h.etcd_name in seen_etcd:
                yield SpecError(_hp(i, "etcdMemberName"), f"duplicate etcd member name {h.etcd_name!r}")
            seen_etcd.setdefault(h.etcd_name, i)


def check_networks(c: Cluster) -> Iterator[SpecError]:
    k = c.spec.kubernetes
    svc, pods = k.service_cidr, k.pod_cidr
    if svc.overlaps(pods):
        yield SpecError("spec.kubernetes.podCidr", f"pod CIDR {pods} overlaps the service CIDR {svc}")
    if svc.prefixlen > 28:
        yield SpecError("spec.kubernetes.serviceCidr", f"service CIDR {svc} is too small (at most /28)")
    if k.node_prefix < pods.prefixlen:
        yield SpecError(
            "spec.kubernetes.nodePrefix",
            f"node prefix /{k.node_prefix} is larger than the pod CIDR {pods}",
        )
    else:
        node_subnets = 2 ** (k.node_prefix - pods.prefixlen)
        if node_subnets < len(c.nodes):
            yield SpecError(
                "spec.kubernetes.nodePrefix",
                f"pod CIDR {pods} split into /{k.node_prefix} gives {node_subnets} node subnets "
                f"for {len(c.nodes)} nodes",
            )
        if k.kubelet.max_pods > 2 ** (32 - k.node_prefix) - 2:
            yield SpecError(
                "spec.kubernetes.kubelet.maxPods",
                f"maxPods {k.kubelet.max_pods} does not fit a /{k.node_prefix} node subnet",
            )
    for i, h in enumerate(c.spec.hosts):
        for field, addr in (("ip", h.ip), ("accessIp", h.access_ip)):
            if addr is None:
                continue
            for name, net in (("service", svc), ("pod", pods)):
                if addr in net:
                    yield SpecError(_hp(i, field), f"{addr} lies inside the {name} CIDR {net}")
    nld = c.spec.dns.nodelocaldns
    if nld.enabled and (nld.ip in svc or nld.ip in pods):
        yield SpecError("spec.dns.nodelocaldns.ip", f"{nld.ip} lies inside the service or pod CIDR")


def check_endpoint(c: Cluster) -> Iterator[SpecError]:
    cpe = c.spec.control_plane_endpoint
    path = "spec.controlPlaneEndpoint"
    if cpe.mode == "local-lb":
        if cpe.local_lb_port == c.spec.kubernetes.apiserver_port:
            yield SpecError(
                f"{path}.localLbPort",
                f"the local balancer needs its own port, not the apiserver port {cpe.local_lb_port}",
            )
        if cpe.address is not None:
            yield SpecError(f"{path}.address", "address is only used with mode external or vip")
        return
    if not cpe.address:
        yield SpecError(f"{path}.address", f"mode {cpe.mode} needs an address")
        return
    if cpe.mode == "vip":
        try:
            vip = ipaddress.IPv4Address(cpe.address)
        except ValueError:
            yield SpecError(f"{path}.address", f"a VIP must be an IPv4 address, not {cpe.address!r}")
            return
        for i, h in enumerate(c.spec.hosts):
            if h.ip == vip:
                yield SpecError(f"{path}.address", f"VIP {vip} is already the ip of hosts[{i}] ({h.name})")
        if len(c.control_planes) < 2:
            yield SpecError(f"{path}.mode", "a VIP needs at least 2 control-plane hosts to move between")


def check_matrix(c: Cluster) -> Iterator[SpecError]:
    s = c.spec
    endpoint = (
        s.control_plane_endpoint.local_lb
        if s.control_plane_endpoint.mode == "local-lb"
        else (s.control_plane_endpoint.mode)
    )
    combo = Combination(s.network.plugin, s.container_runtime.name, s.kubernetes.proxy_mode, endpoint)
    reason = why_unsupported(combo)
    if reason:
        yield SpecError("spec.kubernetes.proxyMode", reason)


def check_version(c: Cluster) -> Iterator[SpecError]:
    from capstan import versions

    k = c.spec.kubernetes
    if not k.version:
        return
    extra = c.spec.artifacts.extra_checksums
    if not any(versions.has_checksums(k.version, arch, extra) for arch in versions.ARCHES):
        known = ", ".join(versions.supported_kubernetes_versions())
        yield SpecError(
            "spec.kubernetes.version",
            f"no known checksums for Kubernetes {k.version} (pinned: {known}); "
            "add kubeadm, kubelet and kubectl sums under spec.artifacts.extraChecksums",
        )


def check_security(c: Cluster) -> Iterator[SpecError]:
    modes = c.spec.security.authorization_modes
    if len(set(modes)) != len(modes):
        yield SpecError("spec.security.authorizationModes", "modes must not repeat")
    if "AlwaysAllow" in modes and len(modes) > 1:
        yield SpecError("spec.security.authorizationModes", "AlwaysAllow cannot be combined with other modes")


CHECKS: tuple[Check, ...] = (
    check_roles,
    check_duplicates,
    check_networks,
    check_endpoint,
    check_matrix,
    check_version,
    check_security,
)


def run_checks(c: Cluster) -> list[SpecError]:
    """Every cross-field problem, in a stable order (the loader raises the first)."""
    return [err for check in CHECKS for err in check(c)]
