"""Mapping Kubespray's core cluster variables: Kubernetes, networking, runtime, DNS, API endpoint, kubelet.

Each function reads the variables of one area through the context (which records them as mapped) and
writes ``spec`` fields. Values capstan cannot honour are errors when using them would build a different
cluster (another CNI, the docker runtime), and warnings when capstan does the same job its own way
(kube-vip becomes keepalived). Variable names and defaults are facts from Kubespray's sample inventory.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from capstan.importers.kubespray.context import Ctx, flag_value

# Keys Kubespray derives from others with a Jinja expression, exactly as capstan derives them.
DERIVED = {
    "dns_domain": "cluster_name",
    "kube_apiserver_ip": "kube_service_addresses",
    "skydns_server": "kube_service_addresses",
    "skydns_server_secondary": "kube_service_addresses",
}

_CNI = {"calico": "calico", "cilium": "cilium", "flannel": "flannel"}
_CNI_PREFIXES = {"calico": "calico_", "cilium": "cilium_", "flannel": "flannel_"}


def derived(c: Ctx, key: str) -> Any:
    """A literal override of a derived key, or None when it still holds Kubespray's own derivation."""
    raw = c.raw(key)
    if isinstance(raw, str) and "{{" in raw and DERIVED[key] in raw:
        return None
    return c.get(key)


def map_kubernetes(c: Ctx) -> None:
    version = c.string("kube_version")
    if version is not None:
        c.put("kubernetes.version", version, "kube_version")
    for key, path in (("kube_service_addresses", "serviceCidr"), ("kube_pods_subnet", "podCidr")):
        cidr = c.string(key)
        if cidr is not None:
            c.put(f"kubernetes.{path}", cidr, key)
    for key, path in (("kube_network_node_prefix", "nodePrefix"), ("kube_apiserver_port", "apiserverPort")):
        number = c.integer(key)
        if number is not None:
            c.put(f"kubernetes.{path}", number, key)
    domain = c.string("cluster_name")
    if domain is not None:
        c.put("kubernetes.clusterDomain", domain, "cluster_name")
    override = derived(c, "dns_domain")
    if override is not None:
        c.put("kubernetes.clusterDomain", str(override), "dns_domain")
    for key, what in (
        ("kube_apiserver_ip", "the first address of the service CIDR"),
        ("skydns_server", "the third address of the service CIDR"),
        ("skydns_server_secondary", "nothing (capstan runs one CoreDNS service)"),
    ):
        if derived(c, key) is not None:
            c.warn(key, f"capstan always uses {what}; this value is ignored")
    mode = c.choice("kube_proxy_mode", {"ipvs": "ipvs", "iptables": "iptables", "nftables": "nftables"})
    if mode is not None:
        c.put("kubernetes.proxyMode", mode, "kube_proxy_mode")
    gates = c.get("kube_feature_gates")
    if gates is not None:
        c.put("kubernetes.featureGates", _feature_gates(c, gates), "kube_feature_gates")
    for key, component in (
        ("kube_kubeadm_apiserver_extra_args", "apiserver"),
        ("kube_kubeadm_controller_extra_args", "controllerManager"),
        ("kube_kubeadm_scheduler_extra_args", "scheduler"),
    ):
        args = c.mapping(key)
        if args:
            c.put(f"kubernetes.extraArgs.{component}", {k: flag_value(v) for k, v in args.items()}, key)
    flags = c.get("kubelet_custom_flags")
    if flags:
        c.put(
            "kubernetes.extraArgs.kubelet", _flags(c, "kubelet_custom_flags", flags), "kubelet_custom_flags"
        )


def _feature_gates(c: Ctx, gates: Any) -> dict[str, bool]:
    if isinstance(gates, dict):
        items = [(str(k), v) for k, v in gates.items()]
    elif isinstance(gates, list | tuple):
        items = []
        for gate in gates:
            name, sep, value = str(gate).partition("=")
            if not sep:
                raise c.error("kube_feature_gates", f"{gate!r} is not Name=true or Name=false")
            items.append((name.strip(), value.strip()))
    else:
        raise c.error("kube_feature_gates", "expected a list of Name=true|false strings")
    out: dict[str, bool] = {}
    for name, value in items:
        text = str(value).lower()
        if text not in ("true", "false"):
            raise c.error("kube_feature_gates", f"{name}={value} is not Name=true or Name=false")
        out[name] = text == "true"
    return out


def _flags(c: Ctx, key: str, flags: Any) -> dict[str, str]:
    items = flags.split() if isinstance(flags, str) else flags
    if not isinstance(items, list | tuple):
        raise c.error(key, "expected a list of --flag=value strings")
    out: dict[str, str] = {}
    for item in items:
        name, _, value = str(item).strip().lstrip("-").partition("=")
        if not name:
            raise c.error(key, f"{item!r} is not a --flag=value string")
        out[name] = value or "true"
    return out


def map_network(c: Ctx) -> None:
    plugin = c.choice("kube_network_plugin", _CNI)
    if plugin is not None:
        c.put("network.plugin", plugin, "kube_network_plugin")
    plugin = plugin or "calico"
    if plugin == "calico":
        _calico(c)
    elif plugin == "cilium":
        tunnel = c.choice(
            "cilium_tunnel_mode", {"vxlan": "vxlan", "geneve": "geneve", "disabled": "disabled"}
        )
        if c.get("cilium_routing_mode") == "native":
            tunnel = "disabled"
        if tunnel is not None:
            c.put("network.cilium.tunnel", tunnel, "cilium_tunnel_mode")
        kpr = c.get("cilium_kube_proxy_replacement")
        if kpr not in (None, False, "false", "disabled"):
            c.warn(
                "cilium_kube_proxy_replacement",
                f"{kpr!r} is not supported: capstan keeps kube-proxy; ignored",
            )
        _mtu(c, "cilium_mtu")
    else:
        backend = c.choice(
            "flannel_backend_type", {"vxlan": "vxlan", "host-gw": "host-gw", "wireguard": "wireguard"}
        )
        if backend is not None:
            c.put("network.flannel.backend", backend, "flannel_backend_type")
        _mtu(c, "flannel_mtu")
    for other, prefix in _CNI_PREFIXES.items():
        if other == plugin:
            continue
        for key in c.vars:
            if key.startswith(prefix) and key not in c.seen:
                c.raw(key)
                c.warn(key, f"ignored: the network plugin is {plugin}, not {other}")


def _calico(c: Ctx) -> None:
    backend = c.string("calico_network_backend") or "vxlan"
    if backend not in ("vxlan", "bird", "none"):
        raise c.error(
            "calico_network_backend", f"{backend!r} is not supported (supported: vxlan, bird, none)"
        )
    modes = {"Always", "CrossSubnet", "Never"}
    ipip = c.string("calico_ipip_mode") or "Never"
    vxlan = c.string("calico_vxlan_mode") or ("Always" if backend == "vxlan" else "Never")
    for key, mode in (("calico_ipip_mode", ipip), ("calico_vxlan_mode", vxlan)):
        if mode not in modes:
            raise c.error(key, f"{mode!r} is not supported (supported: Always, CrossSubnet, Never)")
        if mode == "CrossSubnet":
            c.warn(key, "CrossSubnet is not supported: capstan encapsulates all traffic (Always)")
    if ipip != "Never" and vxlan != "Never":
        raise c.error("calico_ipip_mode", "IP-in-IP and VXLAN cannot both be on")
    key = "calico_ipip_mode" if ipip != "Never" else "calico_vxlan_mode"
    encapsulation = "ipip" if ipip != "Never" else "vxlan" if vxlan != "Never" else "none"
    if backend == "none" and encapsulation == "none":
        c.warn(
            "calico_network_backend", "'none' (policy only, no routing) is not supported: capstan uses BGP"
        )
    if c.has(key) or c.has("calico_network_backend"):
        c.put("network.calico.encapsulation", encapsulation, key if c.has(key) else "calico_network_backend")
    # calico_veth_mtu is the pod MTU capstan means; calico_mtu is the host's, less the tunnel overhead.
    if not _mtu(c, "calico_veth_mtu"):
        host_mtu = c.integer("calico_mtu")
        if host_mtu:
            overhead = {"vxlan": 50, "ipip": 20, "none": 0}[encapsulation]
            c.put("network.mtu", host_mtu - overhead, "calico_mtu")


def _mtu(c: Ctx, key: str) -> bool:
    mtu = c.integer(key)
    if mtu:
        c.put("network.mtu", mtu, key)
    return bool(mtu)


def map_runtime(c: Ctx) -> None:
    runtime = c.choice(
        "container_manager",
        {"containerd": "containerd", "crio": "cri-o"},
        {"docker": "capstan runs containerd or cri-o (set container_manager: containerd)"},
    )
    if runtime is not None:
        c.put("containerRuntime.name", runtime, "container_manager")
    mirrors: dict[str, list[str]] = {}
    insecure: list[str] = []
    entries = c.get("containerd_registries_mirrors")
    if entries is not None:
        if not isinstance(entries, list):
            raise c.error("containerd_registries_mirrors", "expected a list of {prefix, mirrors}")
        for entry in entries:
            if (
                not isinstance(entry, dict)
                or "prefix" not in entry
                or not isinstance(entry.get("mirrors"), list)
            ):
                raise c.error(
                    "containerd_registries_mirrors", f"entry {entry!r} has no prefix and mirrors list"
                )
            for mirror in entry["mirrors"]:
                host = mirror.get("host") if isinstance(mirror, dict) else mirror
                if not host:
                    raise c.error(
                        "containerd_registries_mirrors", f"mirror {mirror!r} of {entry['prefix']} has no host"
                    )
                url = _url(c, "containerd_registries_mirrors", str(host))
                mirrors.setdefault(str(entry["prefix"]), []).append(url)
                if isinstance(mirror, dict) and mirror.get("skip_verify") in (True, "true", "yes"):
                    insecure.append(urlsplit(url).netloc)
                if isinstance(mirror, dict) and mirror.get("override_path"):
                    c.warn(
                        "containerd_registries_mirrors", f"override_path of {host} is not supported; ignored"
                    )
    legacy = c.mapping("containerd_registries")
    for prefix, endpoints in (legacy or {}).items():
        for endpoint in endpoints if isinstance(endpoints, list) else [endpoints]:
            mirrors.setdefault(prefix, []).append(_url(c, "containerd_registries", str(endpoint)))
    insecure.extend((c.mapping("containerd_insecure_registries") or {}).keys())
    if mirrors:
        key = "containerd_registries_mirrors" if entries is not None else "containerd_registries"
        c.put("containerRuntime.registryMirrors", mirrors, key)
    if insecure:
        key = "containerd_registries_mirrors" if entries is not None else "containerd_insecure_registries"
        c.put("containerRuntime.insecureRegistries", sorted(set(insecure)), key)


def _url(c: Ctx, key: str, host: str) -> str:
    if host.startswith(("http://", "https://")):
        return host.rstrip("/")
    c.warn(key, f"mirror {host!r} has no scheme; imported as https://{host}")
    return f"https://{host}".rstrip("/")


def map_dns(c: Ctx) -> None:
    mode = c.choice(
        "dns_mode",
        {"coredns": "coredns", "coredns_dual": "coredns"},
        {
            "none": "capstan always deploys CoreDNS (supported: coredns, coredns_dual)",
            "manual": "capstan always deploys CoreDNS (supported: coredns, coredns_dual)",
        },
    )
    if mode is not None and c.raw("dns_mode") == "coredns_dual":
        c.warn("dns_mode", "coredns_dual is not supported: capstan runs one CoreDNS deployment")
    enabled = c.boolean("enable_nodelocaldns")
    if enabled is not None:
        c.put("dns.nodelocaldns.enabled", enabled, "enable_nodelocaldns")
    ip = c.string("nodelocaldns_ip")
    if ip is not None:
        c.put("dns.nodelocaldns.ip", ip, "nodelocaldns_ip")
    upstream = c.strings("upstream_dns_servers")
    if upstream:
        c.put("dns.upstreamServers", upstream, "upstream_dns_servers")
    autoscaler = c.boolean("enable_dns_autoscaler")
    if autoscaler is not None:
        c.put("dns.autoscaler.enabled", autoscaler, "enable_dns_autoscaler")
    for key, path in (
        ("dns_cores_per_replica", "coresPerReplica"),
        ("dns_nodes_per_replica", "nodesPerReplica"),
        ("dns_min_replicas", "minReplicas"),
    ):
        number = c.integer(key)
        if number is not None:
            c.put(f"dns.autoscaler.{path}", number, key)


def map_endpoint(c: Ctx) -> None:
    external = c.mapping("loadbalancer_apiserver")
    vip = c.boolean("kube_vip_enabled")
    localhost = c.boolean("loadbalancer_apiserver_localhost")
    lb_type = c.choice("loadbalancer_apiserver_type", {"nginx": "nginx", "haproxy": "haproxy"})
    if external is not None and not external.get("address"):
        raise c.error("loadbalancer_apiserver", "needs an address")
    port = external.get("port") if external else None
    if vip:
        address = c.string("kube_vip_address") or (str(external["address"]) if external else None)
        c.put("controlPlaneEndpoint.mode", "vip", "kube_vip_enabled")
        c.warn("kube_vip_enabled", "capstan runs keepalived (VRRP) for the virtual IP, not kube-vip")
        if address is not None:
            c.put(
                "controlPlaneEndpoint.address",
                address,
                "kube_vip_address" if c.has("kube_vip_address") else "loadbalancer_apiserver",
            )
        interface = c.string("kube_vip_interface")
        if interface is not None:
            c.put("controlPlaneEndpoint.vip.interface", interface, "kube_vip_interface")
    elif external is not None:
        c.put("controlPlaneEndpoint.mode", "external", "loadbalancer_apiserver")
        c.put("controlPlaneEndpoint.address", str(external["address"]), "loadbalancer_apiserver")
        if localhost:
            c.warn(
                "loadbalancer_apiserver_localhost",
                "ignored: capstan sends every node to the external balancer",
            )
    elif localhost is False:
        c.warn(
            "loadbalancer_apiserver_localhost",
            "false without an external balancer is not supported: "
            "capstan puts a local balancer on every node (mode local-lb)",
        )
    if port is not None and (vip or external is not None):
        try:
            c.put("controlPlaneEndpoint.port", int(port), "loadbalancer_apiserver")
        except (TypeError, ValueError):
            raise c.error("loadbalancer_apiserver", f"port {port!r} is not a number") from None
    if not vip and external is None:
        if lb_type is not None:
            c.put("controlPlaneEndpoint.localLb", lb_type, "loadbalancer_apiserver_type")
        else:
            c.default_differs(
                "loadbalancer_apiserver_type", "nginx", "haproxy", "spec.controlPlaneEndpoint.localLb"
            )
    elif lb_type is not None:
        c.warn(
            "loadbalancer_apiserver_type",
            "ignored: there is no local balancer with an external or virtual IP",
        )
    lb_port = c.integer("loadbalancer_apiserver_port")
    apiserver_port = c.integer("kube_apiserver_port") or 6443
    if lb_port is not None and lb_port != apiserver_port:
        c.warn(
            "loadbalancer_apiserver_port",
            f"{lb_port} is not supported: capstan's local balancer listens on "
            f"the apiserver port ({apiserver_port})",
        )


def map_kubelet(c: Ctx) -> None:
    max_pods = c.integer("kubelet_max_pods")
    if max_pods is not None:
        c.put("kubernetes.kubelet.maxPods", max_pods, "kubelet_max_pods")
    for switch, prefix, defaults, path in (
        ("kube_reserved", "kube", {"cpu": "100m", "memory": "256Mi"}, "kubeReserved"),
        ("system_reserved", "system", {"cpu": "500m", "memory": "512Mi"}, "systemReserved"),
    ):
        values = {
            resource: c.string(f"{prefix}_{name}_reserved")
            for resource, name in (
                ("cpu", "cpu"),
                ("memory", "memory"),
                ("ephemeral-storage", "ephemeral_storage"),
                ("pid", "pid"),
            )
        }
        given = {k: v for k, v in values.items() if v is not None}
        on = c.boolean(switch)
        if on is None:
            c.default_differs(switch, "false", "true", f"spec.kubernetes.kubelet.{path}")
        if on is False:
            c.put(f"kubernetes.kubelet.{path}", {}, switch)
            for resource in given:
                name = resource.replace("-", "_")
                c.warn(f"{prefix}_{name}_reserved", f"has no effect while {switch} is false; ignored")
        elif given:
            key = switch if c.has(switch) else f"{prefix}_{next(iter(given)).replace('-', '_')}_reserved"
            c.put(f"kubernetes.kubelet.{path}", {**defaults, **given}, key)
    eviction = c.mapping("eviction_hard")
    if eviction:
        c.put("kubernetes.kubelet.evictionHard", {k: str(v) for k, v in eviction.items()}, "eviction_hard")
    rotate = c.boolean("kubelet_rotate_certificates")
    if rotate is not None:
        c.put("kubernetes.kubelet.rotateCertificates", rotate, "kubelet_rotate_certificates")
