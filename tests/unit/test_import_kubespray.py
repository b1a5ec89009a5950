"""`capstan import kubespray`: inventories in both forms, group_vars mapping, warnings and errors."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from capstan.errors import SpecError
from capstan.importers.kubespray import ImportResult, cli_main, import_kubespray
from capstan.spec import parse_spec_text

FIXTURES = Path(__file__).parent / "fixtures" / "kubespray"
MYCLUSTER = FIXTURES / "mycluster"
K8S_CLUSTER_YML = "group_vars/k8s_cluster/k8s-cluster.yml"
_INI_PIECES = [
    "[kube_control_plane]", "[etcd:children]", "kube_control_plane", "[kube_node]", "[all:vars]", "[bastion]",
    "cp1 ansible_host=192.0.2.1", "n1 ansible_host=192.0.2.2 ip=10.0.0.2", "kube_network_plugin=cilium",
    "ansible_port=x", "node_taints=\"['a=b:NoSchedule']\"", "node_labels=[1]", "[k8s_cluster:children]",
    "kube_version=v1.36.4", "kube_pods_subnet=10.0.0.0/8", "serial=0", "[a:children]", "b",
    "[b:children]", "a",
]  # fmt: skip


@pytest.fixture(scope="module")
def ini() -> ImportResult:
    return import_kubespray(MYCLUSTER / "inventory.ini")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the mycluster inventory directory."""
    dest = tmp_path / "mycluster"
    shutil.copytree(MYCLUSTER, dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def warned(result: ImportResult, *parts: str) -> list[str]:
    return [w for w in result.warnings if all(p in w for p in parts)]


# ---------------------------------------------------------------- inventory forms, groups, host vars


def test_ini_and_yaml_forms_give_the_same_cluster(ini: ImportResult) -> None:
    yaml_form = import_kubespray(MYCLUSTER / "hosts.yaml")
    assert yaml_form.cluster == ini.cluster
    assert yaml_form.cluster.model_dump() == ini.cluster.model_dump()


def test_inventory_directory_finds_inventory_ini(ini: ImportResult) -> None:
    assert import_kubespray(MYCLUSTER).cluster == ini.cluster


def test_groups_become_roles(ini: ImportResult) -> None:
    c = ini.cluster
    assert c.name == "mycluster"
    assert [h.name for h in c.hosts] == ["cp1", "cp2", "cp3", "node1", "node2", "node3"]
    assert all(h.roles == ["control-plane", "etcd"] for h in c.control_planes)
    assert [h.name for h in c.etcd_hosts] == ["cp1", "cp2", "cp3"]  # [etcd:children] kube_control_plane
    assert [h.name for h in c.workers] == ["node1", "node2", "node3"]
    assert "jump" not in [h.name for h in c.hosts]  # the bastion is not a cluster host


def test_host_vars_mapped(ini: ImportResult) -> None:
    c = ini.cluster
    cp1, node1, node2, node3 = c.host("cp1"), c.host("node1"), c.host("node2"), c.host("node3")
    assert (cp1.address, str(cp1.ip), cp1.port) == ("198.51.100.11", "10.0.0.11", None)
    assert node1.labels == {"node.example.com/pool": "general"}
    assert str(node2.access_ip) == "10.0.1.22"
    assert [str(t) for t in node2.taints] == ["dedicated=batch:NoSchedule"]
    assert node3.port == 2222
    assert node3.labels == {"disk": "ssd"}  # from host_vars/node3.yml
    # Kubespray's default member names etcd<N>, unless etcd_member_name is set.
    assert [h.etcd_member_name for h in c.etcd_hosts] == ["etcd1", "etcd2", "etcd-c"]
    ssh = c.spec.ssh
    assert (ssh.user, ssh.port, ssh.key_path) == ("ubuntu", 22, "~/.ssh/mycluster_ed25519")
    assert ssh.bastion is not None
    assert (ssh.bastion.address, ssh.bastion.port, ssh.bastion.user) == ("203.0.113.5", 22, "jumper")
    assert all(h.user is None for h in c.hosts)


def test_host_var_warnings(ini: ImportResult) -> None:
    assert warned(ini, "host_vars/node3.yml", "kube_override_hostname", "node3")
    assert warned(ini, "inventory.ini [all:vars]", "ansible_become", "not mapped")


def test_legacy_group_names() -> None:
    r = import_kubespray(FIXTURES / "legacy" / "inventory.ini")
    c = r.cluster
    assert c.host("master1").roles == ["control-plane", "etcd"]
    assert [h.name for h in c.workers] == ["worker1", "worker2"]
    assert c.spec.ssh.user == "admin"
    # group_vars/k8s-cluster/ (old spelling), group_vars/etcd.yml and group_vars/all.yml are all read.
    assert c.spec.network.plugin == "flannel" and c.spec.network.flannel.backend == "host-gw"
    assert c.spec.container_runtime.name == "cri-o"
    assert c.spec.kubernetes.version == "1.35.8"
    assert c.spec.etcd.data_dir == "/data/etcd"
    # Nothing set them, and Kubespray's defaults differ from capstan's: each one is reported.
    for key in (
        "kube_encrypt_secret_data",
        "kubernetes_audit",
        "loadbalancer_apiserver_type",
        "kube_reserved",
    ):
        assert warned(r, f"{key} is not set", "capstan's default"), key


def test_host_in_no_role_group_is_reported(copy: Path) -> None:
    edit(copy / "inventory.ini", "[bastion]\n", "spare ansible_host=198.51.100.99\n\n[bastion]\n")
    r = import_kubespray(copy / "inventory.ini")
    assert "spare" not in [h.name for h in r.cluster.hosts]
    assert warned(r, "inventory.ini", "'spare'", "not imported")


# ---------------------------------------------------------------- group_vars


def test_group_vars_mapped(ini: ImportResult) -> None:
    s = ini.cluster.spec
    k = s.kubernetes
    assert k.version == "1.36.4"
    assert (str(k.service_cidr), str(k.pod_cidr)) == ("10.96.0.0/18", "10.112.0.0/16")
    assert k.cluster_domain == "corp.internal"  # Kubespray's cluster_name is the DNS domain
    assert k.proxy_mode == "iptables"
    assert k.feature_gates == {"InPlacePodVerticalScaling": True, "ExampleGate": False}
    assert k.extra_args.apiserver == {"profiling": "false", "request-timeout": "2m"}
    assert k.kubelet.max_pods == 100
    assert k.kubelet.kube_reserved == {"cpu": "100m", "memory": "512Mi"}
    assert k.kubelet.system_reserved == {}
    assert k.kubelet.eviction_hard == {"memory.available": "200Mi", "nodefs.available": "10%"}
    assert s.network.plugin == "calico" and s.network.calico.encapsulation == "ipip"
    assert s.network.mtu == 1480  # calico_mtu 1500 less the IP-in-IP overhead
    assert str(s.dns.nodelocaldns.ip) == "169.254.20.10"
    assert [str(ip) for ip in s.dns.upstream_servers] == ["192.0.2.53", "192.0.2.54"]
    assert s.control_plane_endpoint.mode == "local-lb" and s.control_plane_endpoint.local_lb == "nginx"
    assert s.security.encryption_at_rest.provider == "aescbc"
    assert s.security.audit.enabled and not s.security.anonymous_auth
    assert s.security.pod_security.enforce == "restricted"
    assert s.security.oidc is not None
    assert (s.security.oidc.issuer_url, s.security.oidc.username_claim) == (
        "https://idp.example.com/realms/k8s",
        "email",
    )
    assert s.etcd.data_dir == "/var/lib/etcd-data"
    assert s.etcd.backup.retention == 10000  # -1 (keep all) becomes the largest retention
    assert s.container_runtime.registry_mirrors == {
        "docker.io": ["https://mirror.example.com"],
        "registry.example.com:5000": ["http://registry.example.com:5000"],
    }
    assert s.container_runtime.insecure_registries == ["registry.example.com:5000"]
    assert s.artifacts.mirror == "https://files.example.com/kubespray"
    assert s.addons.metrics_server.enabled and s.addons.local_path_provisioner.enabled
    u = s.upgrade
    assert u.worker_batch == "25%"
    assert (u.drain.grace_period_seconds, u.drain.timeout_seconds, u.drain.retries) == (120, 600, 5)
    assert u.drain.retry_delay_seconds == 20
    assert u.pause.before_node and not u.pause.after_node
    assert s.pki.leaf_validity_days == 730
    assert s.pki.apiserver_extra_sans == ["k8s.example.com", "198.51.100.10"]


@pytest.mark.parametrize(
    ("source", "key"),
    [
        (K8S_CLUSTER_YML, "kube_log_level"),
        (K8S_CLUSTER_YML, "kube_config_dir"),
        (K8S_CLUSTER_YML, "event_ttl_duration"),
        ("group_vars/all/all.yml", "ntp_enabled"),
        ("group_vars/all/all.yml", "ntp_servers"),
        ("group_vars/all/offline.yml", "registry_host"),
        ("group_vars/k8s_cluster/k8s-net-calico.yml", "calico_pool_blocksize"),
    ],
)
def test_unmapped_keys_are_warned_with_their_file(ini: ImportResult, source: str, key: str) -> None:
    assert len(warned(ini, f"{source}: {key}: not mapped")) == 1


def test_other_reported_keys(ini: ImportResult) -> None:
    assert warned(ini, K8S_CLUSTER_YML, "kube_network_node_prefix", "cannot evaluate")
    assert ini.cluster.spec.kubernetes.node_prefix == 24  # the template was not evaluated: default kept
    assert warned(ini, "group_vars/all/offline.yml: kubeadm_download_url", "spec.artifacts.mirror")
    assert warned(ini, "group_vars/k8s_cluster/addons.yml: krew_enabled", "not supported")
    assert warned(ini, "group_vars/all/etcd.yml: etcd_backup_retention_count")


def test_every_key_is_mapped_or_warned(ini: ImportResult) -> None:
    for path in sorted((MYCLUSTER / "group_vars").rglob("*.yml")):
        label = path.relative_to(MYCLUSTER).as_posix()
        for key in yaml.safe_load(path.read_text()):
            assert key in ini.mapped or warned(ini, f"{label}: {key}"), f"{label}: {key} silently dropped"
    # Kubespray defaults identical to capstan's are mapped without a warning.
    for key in ("kube_apiserver_ip", "dns_domain", "helm_enabled", "bin_dir", "loadbalancer_apiserver_port"):
        assert key in ini.mapped and not warned(ini, f": {key}:"), key


def test_group_vars_option_and_labels(copy: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "group_vars"
    shutil.copytree(copy / "group_vars", elsewhere)
    shutil.rmtree(copy / "group_vars")
    edit(elsewhere / "k8s_cluster" / "k8s-cluster.yml", "kube_proxy_mode: iptables", "kube_proxy_mode: ipvs")
    r = import_kubespray(copy / "inventory.ini", group_vars=elsewhere, name="prod")
    assert r.cluster.name == "prod"
    assert r.cluster.spec.kubernetes.proxy_mode == "ipvs"
    assert warned(r, f"{K8S_CLUSTER_YML}: kube_log_level")


def test_without_group_vars_capstan_defaults_apply(copy: Path) -> None:
    shutil.rmtree(copy / "group_vars")
    r = import_kubespray(copy / "inventory.ini")
    assert r.cluster.spec.network.plugin == "calico"
    assert r.cluster.spec.security.encryption_at_rest.enabled
    assert warned(r, "kube_encrypt_secret_data is not set")


def test_vault_values_are_reported_not_guessed(copy: Path) -> None:
    edit(
        copy / "group_vars" / "all" / "etcd.yml",
        "etcd_data_dir: /var/lib/etcd-data",
        "etcd_data_dir: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162636465",
    )
    (copy / "group_vars" / "all" / "secret.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n616263\n")
    r = import_kubespray(copy / "inventory.ini")
    assert r.cluster.spec.etcd.data_dir == "/var/lib/etcd"
    assert warned(r, "group_vars/all/etcd.yml: etcd_data_dir", "ansible-vault")
    assert warned(r, "group_vars/all/secret.yml", "ansible-vault")


def test_cluster_setting_in_host_vars_is_reported(copy: Path) -> None:
    (copy / "host_vars" / "node1.yml").write_text("kubelet_max_pods: 250\n")
    r = import_kubespray(copy / "inventory.ini")
    assert r.cluster.spec.kubernetes.kubelet.max_pods == 100
    assert warned(r, "host_vars/node1.yml: kubelet_max_pods (host node1)", "not supported")


def test_kube_vip_becomes_keepalived_vip(copy: Path) -> None:
    with (copy / "group_vars" / "k8s_cluster" / "addons.yml").open("a") as f:
        f.write("kube_vip_enabled: true\nkube_vip_address: 10.0.0.100\nkube_vip_interface: ens3\n")
    r = import_kubespray(copy / "inventory.ini")
    cpe = r.cluster.spec.control_plane_endpoint
    assert (cpe.mode, cpe.address, cpe.vip.interface) == ("vip", "10.0.0.100", "ens3")
    assert warned(r, "kube_vip_enabled", "keepalived")
    assert warned(r, "loadbalancer_apiserver_type", "ignored")


def test_external_load_balancer(copy: Path) -> None:
    with (copy / "group_vars" / "all" / "all.yml").open("a") as f:
        f.write("loadbalancer_apiserver:\n  address: 198.51.100.10\n  port: 8443\n")
    edit(copy / "group_vars" / "all" / "all.yml", "loadbalancer_apiserver_localhost: true\n", "")
    r = import_kubespray(copy / "inventory.ini")
    assert r.cluster.endpoint == ("198.51.100.10", 8443)
    assert r.cluster.spec.control_plane_endpoint.mode == "external"


# ---------------------------------------------------------------- errors


def test_unsupported_cni_is_an_error_naming_the_key_and_file(copy: Path) -> None:
    edit(copy / K8S_CLUSTER_YML, "kube_network_plugin: calico", "kube_network_plugin: kube-ovn")
    with pytest.raises(SpecError) as info:
        import_kubespray(copy / "inventory.ini")
    assert info.value.path == K8S_CLUSTER_YML
    assert info.value.message == (
        "kube_network_plugin: 'kube-ovn' is not supported (supported: calico, cilium, flannel)"
    )
    assert str(info.value).startswith(f"{K8S_CLUSTER_YML}: kube_network_plugin:")


def test_docker_runtime_is_an_error(copy: Path) -> None:
    edit(copy / K8S_CLUSTER_YML, "container_manager: containerd", "container_manager: docker")
    with pytest.raises(SpecError, match=r"container_manager: 'docker' is not supported"):
        import_kubespray(copy / "inventory.ini")


def test_dns_mode_none_is_an_error(copy: Path) -> None:
    edit(copy / K8S_CLUSTER_YML, "dns_mode: coredns", "dns_mode: none")
    with pytest.raises(SpecError, match=r"k8s-cluster.yml: dns_mode: 'none' is not supported"):
        import_kubespray(copy / "inventory.ini")


def test_even_etcd_count_fails_validation_naming_the_host(copy: Path) -> None:
    edit(
        copy / "inventory.ini",
        "[etcd:children]\nkube_control_plane\n",
        "[etcd:children]\nkube_control_plane\n\n[etcd]\nnode1\n",
    )
    with pytest.raises(SpecError) as info:
        import_kubespray(copy / "inventory.ini")
    assert info.value.path == "spec.hosts[3].roles"
    assert "odd number" in str(info.value)
    assert "inventory host 'node1'" in str(info.value)


def test_validation_error_names_the_kubespray_variable(copy: Path) -> None:
    edit(copy / K8S_CLUSTER_YML, "kube_pods_subnet: 10.112.0.0/16", "kube_pods_subnet: 10.96.0.0/16")
    with pytest.raises(SpecError) as info:
        import_kubespray(copy / "inventory.ini")
    assert info.value.path == "spec.kubernetes.podCidr"
    assert f"kube_pods_subnet in {K8S_CLUSTER_YML}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("[kube_node\nnode1\n", 1, "malformed section header"),
        ("[all]\ncp1 ansible_host=10.0.0.1\n[all:vars]\nansible_user\n", 4, "expected key=value"),
        ("[all]\ncp1 ansible_host\n", 2, "expected key=value"),
        ("[kube_node]\nnode[01:10] ansible_user=x\n", 2, "host range"),
        ("[kube_node:hosts2]\n", 1, "unknown section type"),
        ("[all]\n# fine\ncp1 ansible_host='10.0.0.1\n", 3, "cannot split"),
    ],
)
def test_malformed_ini_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    inv = tmp_path / "inventory.ini"
    inv.write_text(text)
    with pytest.raises(SpecError) as info:
        import_kubespray(inv)
    assert info.value.path == f"inventory.ini:{line}"
    assert what in info.value.message


def test_malformed_yaml_inventory_names_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yaml"
    inv.write_text("all:\n  hosts:\n    cp1: {ansible_host: 10.0.0.1\n")
    with pytest.raises(SpecError, match=r"^hosts.yaml: .* at line \d+, column \d+"):
        import_kubespray(inv)
    inv.write_text("all:\n  hostz: {}\n")
    with pytest.raises(SpecError, match=r"^hosts.yaml: all: unknown key 'hostz'"):
        import_kubespray(inv)


def test_malformed_group_vars_names_the_file(copy: Path) -> None:
    (copy / "group_vars" / "all" / "all.yml").write_text("bin_dir: [unclosed\n")
    with pytest.raises(SpecError, match=r"^group_vars/all/all.yml: .* at line 2"):
        import_kubespray(copy / "inventory.ini")


def test_bad_value_type_names_key_and_file(copy: Path) -> None:
    edit(copy / K8S_CLUSTER_YML, "kubelet_max_pods: 100", "kubelet_max_pods: lots")
    with pytest.raises(SpecError, match=rf"^{K8S_CLUSTER_YML}: kubelet_max_pods: expected a whole number"):
        import_kubespray(copy / "inventory.ini")


# ---------------------------------------------------------------- output


def test_yaml_output_reloads_to_an_equal_model(ini: ImportResult) -> None:
    text = ini.yaml()
    assert text.startswith("# Imported from the Kubespray inventory")
    assert parse_spec_text(text) == ini.cluster


def test_cli_main_writes_the_spec_and_prints_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ini: ImportResult
) -> None:
    out = tmp_path / "cluster.yaml"
    assert cli_main(MYCLUSTER / "inventory.ini", None, out, None) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    lines = captured.err.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines)
    assert len(lines) == len(ini.warnings)
    assert parse_spec_text(out.read_text()) == ini.cluster


# ---------------------------------------------------------------- more mappings and robustness


def test_cilium_options_and_other_plugins_keys(copy: Path) -> None:
    k8s = copy / K8S_CLUSTER_YML
    edit(k8s, "kube_network_plugin: calico", "kube_network_plugin: cilium\ncilium_tunnel_mode: geneve")
    r = import_kubespray(copy / "inventory.ini")
    assert r.cluster.spec.network.plugin == "cilium"
    assert r.cluster.spec.network.cilium.tunnel == "geneve"
    assert r.cluster.spec.network.mtu == 0  # calico_mtu does not apply to cilium
    assert warned(r, "k8s-net-calico.yml: calico_mtu", "network plugin is cilium")


def test_pod_security_off_and_reservations_off(copy: Path) -> None:
    k8s = copy / K8S_CLUSTER_YML
    edit(k8s, "kube_pod_security_use_default: true", "kube_pod_security_use_default: false")
    edit(k8s, "kube_reserved: true", "kube_reserved: false")
    r = import_kubespray(copy / "inventory.ini")
    psa = r.cluster.spec.security.pod_security
    assert (psa.enforce, psa.audit, psa.warn) == ("privileged", "privileged", "privileged")
    assert warned(r, "kube_pod_security_default_enforce", "no effect")
    assert r.cluster.spec.kubernetes.kubelet.kube_reserved == {}
    assert warned(r, "kube_memory_reserved", "no effect while kube_reserved is false")


def test_group_specific_cluster_setting_is_reported(copy: Path) -> None:
    edit(copy / "inventory.ini", "[all:vars]", "[kube_node:vars]\nenable_dns_autoscaler=false\n\n[all:vars]")
    r = import_kubespray(copy / "inventory.ini")
    assert r.cluster.spec.dns.autoscaler.enabled is False
    assert warned(r, "inventory.ini [kube_node:vars]: enable_dns_autoscaler", "group kube_node only")


def test_ini_literals_and_host_port_syntax(tmp_path: Path) -> None:
    (tmp_path / "inventory.ini").write_text(
        "[kube_control_plane]\n"
        "cp1:2201 ansible_host=192.0.2.1 node_labels=\"{'a': 'b', 'gpu': True}\"\n"
        "[etcd]\ncp1\n"
        "[kube_node]\ncp1\n"
        '[all:vars]\nansible_user = "core"\nkubelet_max_pods=120\n'
    )
    r = import_kubespray(tmp_path / "inventory.ini", name="one")
    cp1 = r.cluster.host("cp1")
    assert r.cluster.spec.ssh.port == 2201  # the only port in use becomes the cluster's SSH port
    assert (cp1.port, cp1.roles, cp1.labels) == (
        None,
        ["control-plane", "etcd", "worker"],
        {"a": "b", "gpu": "true"},
    )
    assert r.cluster.spec.ssh.user == "core"
    assert r.cluster.spec.kubernetes.kubelet.max_pods == 120


def test_missing_inventory_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        import_kubespray(tmp_path / "nope.ini")
    with pytest.raises(SpecError, match="no inventory file found"):
        import_kubespray(tmp_path)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_INI_PIECES) | st.text(max_size=30), max_size=12))
def test_any_ini_text_imports_or_raises_spec_error(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inv = Path(tmp) / "inventory.ini"
        inv.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(SpecError):
            import_kubespray(inv, name="fuzz")


_FUZZ_KEYS = [
    "kube_version", "kube_network_plugin", "container_manager", "kube_proxy_mode", "kube_service_addresses",
    "kube_pods_subnet", "kube_network_node_prefix", "cluster_name", "dns_domain", "dns_mode",
    "enable_nodelocaldns", "nodelocaldns_ip", "upstream_dns_servers", "loadbalancer_apiserver",
    "loadbalancer_apiserver_localhost", "loadbalancer_apiserver_type", "loadbalancer_apiserver_port",
    "kube_vip_enabled", "kube_vip_address", "kube_apiserver_port", "kube_encrypt_secret_data",
    "kube_encryption_algorithm", "kubernetes_audit", "kube_pod_security_use_default",
    "kube_pod_security_default_enforce", "metrics_server_enabled", "etcd_data_dir",
    "etcd_backup_retention_count",
    "etcd_deployment_type", "drain_timeout", "drain_retries", "serial", "upgrade_node_confirm",
    "kube_feature_gates", "kube_kubeadm_apiserver_extra_args", "kubelet_custom_flags", "kubelet_max_pods",
    "kube_reserved", "kube_memory_reserved", "eviction_hard", "calico_network_backend", "calico_ipip_mode",
    "calico_vxlan_mode", "calico_mtu", "containerd_registries_mirrors", "containerd_registries", "files_repo",
    "kube_oidc_auth", "kube_oidc_url", "kube_oidc_client_id", "kube_webhook_token_auth",
    "authorization_modes",
    "kube_cert_validity_period", "supplementary_addresses_in_ssl_keys", "helm_enabled", "bin_dir",
    "ansible_user", "ansible_port", "ip", "node_labels", "node_taints",
]  # fmt: skip
_FUZZ_VALUES = [
    None, True, False, 0, -1, 7, 3.5, "x", "", "{{ x }}", [], ["a"], [{"a": 1}], {}, {"address": None},
    {"address": "10.0.0.100", "port": "p"}, [{"prefix": 1}], [{"prefix": "docker.io", "mirrors": [None]}],
    [{"prefix": "x", "mirrors": [{"host": 5, "skip_verify": True}]}], "10.0.0.0/8", "360s", "Always",
    "CrossSubnet", "8760h", "25%", ["A=true", "B"], {"k": [1, 2]},
]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("fuzz") / "mycluster"
    shutil.copytree(MYCLUSTER, dest)
    return dest


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_FUZZ_KEYS), st.sampled_from(_FUZZ_VALUES), max_size=6))
def test_any_group_vars_values_import_or_raise_spec_error(fuzz_dir: Path, values: dict[str, object]) -> None:
    (fuzz_dir / "group_vars" / "all" / "zz-fuzz.yml").write_text(yaml.safe_dump(values))
    with contextlib.suppress(SpecError):
        r = import_kubespray(fuzz_dir / "inventory.ini")
        assert parse_spec_text(r.yaml()) == r.cluster
