"""render_host: which files each host gets, that they parse, are deterministic and mark secrets."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.errors import RenderError
from capstan.render import SYSCTLS, RenderedFile, Secrets, modules_for, new_secrets, render_host
from capstan.render._env import render_text
from capstan.spec import Cluster, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SECRETS = Secrets(base64.b64encode(bytes(range(32))).decode(), "abcdef.0123456789abcdef")
HASH = "sha256:" + "ab" * 32


def _spec(example: str = "ha", **spec_changes: Any) -> Cluster:
    data = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    data["spec"].update(spec_changes)
    return parse_spec(data)


def _all(cluster: Cluster) -> dict[str, dict[str, RenderedFile]]:
    return {h.name: render_host(cluster, h.name, SECRETS, ca_cert_hash=HASH) for h in cluster.hosts}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_renders_for_every_host_and_every_file_parses(example: Path) -> None:
    cluster = load_spec(example)
    for host, files in _all(cluster).items():
        assert files, host
        for path, f in files.items():
            assert path == f.path and path.startswith("/")
            text = f.text
            assert text.endswith("\n"), path
            if path.endswith((".yaml", ".yml")):
                assert all(isinstance(d, dict) for d in yaml.safe_load_all(text) if d is not None), path
            elif path.endswith(".toml") or path.startswith(("/etc/crio/", "/etc/containers/")):
                if path.endswith(".json"):
                    continue
                tomllib.loads(text)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_rendering_is_deterministic(example: Path) -> None:
    assert _all(load_spec(example)) == _all(load_spec(example))


def test_files_by_role_in_ha() -> None:
    files = _all(_spec("ha"))
    cp1, cp2, w1 = files["cp1"], files["cp2"], files["w1"]
    common = {"/etc/sysctl.d/99-capstan.conf", "/etc/modules-load.d/capstan.conf"}
    etcd = {"/etc/etcd.env", "/etc/systemd/system/etcd.service", "/etc/etcdctl.env"}
    node = {
        "/etc/containerd/config.toml",
        "/etc/systemd/system/containerd.service",
        "/etc/systemd/system/kubelet.service",
        "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "/etc/crictl.yaml",
        "/etc/kubernetes/kubeadm-config.yaml",
    }
    cp = {
        "/etc/kubernetes/admission-config.yaml",
        "/etc/kubernetes/authentication-config.yaml",
        "/etc/kubernetes/encryption-config.yaml",
        "/etc/kubernetes/audit-policy.yaml",
    }
    lb = {"/etc/kube-lb/haproxy.cfg", "/etc/systemd/system/kube-apiserver-lb.service"}
    # local-lb: the balancer runs on every node, control planes included, and is the same everywhere.
    assert set(cp1) == common | etcd | node | cp | lb
    assert set(cp2) == set(files["cp3"]) == set(cp1)
    assert set(w1) == set(files["w2"]) == common | node | lb
    for path in lb:
        assert len({f[path].content for f in files.values()}) == 1, path


def test_etcd_only_hosts_get_no_local_balancer() -> None:
    files = _all(_spec("separate-etcd", controlPlaneEndpoint={"mode": "local-lb"}))
    with_lb = sorted(h for h, f in files.items() if "/etc/kube-lb/haproxy.cfg" in f)
    assert with_lb == ["cp1", "cp2", "w1", "w2", "w3"]
    assert not any(p.startswith("/etc/kube-lb") for h in ("etcd1", "etcd2", "etcd3") for p in files[h])


def test_files_by_role_with_separate_etcd_and_vip() -> None:
    files = _all(_spec("separate-etcd"))
    assert set(files["etcd1"]) == {
        "/etc/sysctl.d/99-capstan.conf",
        "/etc/modules-load.d/capstan.conf",
        "/etc/etcd.env",
        "/etc/systemd/system/etcd.service",
        "/etc/etcdctl.env",
    }
    assert "/etc/keepalived/keepalived.conf" in files["cp1"]
    assert "/etc/etcd.env" not in files["cp1"]
    assert not any(p.startswith("/etc/kube-lb") for f in files.values() for p in f)
    assert "/etc/keepalived/keepalived.conf" not in files["w1"]


def test_secret_files_are_marked_and_0600_and_others_are_not() -> None:
    for files in _all(_spec("ha")).values():
        for path, f in files.items():
            carries_secret = any(s in f.text for s in (SECRETS.bootstrap_token, SECRETS.encryption_key_b64))
            assert f.secret == carries_secret, path
            assert f.mode == (0o600 if f.secret else 0o644), path
            assert (f.owner, f.group) == ("root", "root")
    cp1 = render_host(_spec("ha"), "cp1", SECRETS)
    assert cp1["/etc/kubernetes/encryption-config.yaml"].secret
    assert cp1["/etc/kubernetes/kubeadm-config.yaml"].secret


def test_secrets_never_show_in_reprs() -> None:
    f = render_host(_spec("ha"), "cp1", SECRETS)["/etc/kubernetes/kubeadm-config.yaml"]
    for text in (repr(f), repr(SECRETS)):
        assert SECRETS.bootstrap_token not in text and SECRETS.encryption_key_b64 not in text


def test_new_secrets_are_valid_and_fresh() -> None:
    a, b = new_secrets(), new_secrets()
    assert a != b
    assert len(base64.b64decode(a.encryption_key_b64)) == 32
    assert a.bootstrap_token_id == a.bootstrap_token[:6]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("encryption_key_b64", base64.b64encode(b"short").decode()),
        ("encryption_key_b64", "not base64!"),
        ("bootstrap_token", "ABCDEF.0123456789abcdef"),
        ("bootstrap_token", "abcdef0123456789abcdef"),
    ],
)
def test_bad_secrets_are_rejected_without_echoing_them(field: str, value: str) -> None:
    good = {
        "encryption_key_b64": SECRETS.encryption_key_b64,
        "bootstrap_token": SECRETS.bootstrap_token,
    }
    with pytest.raises(RenderError, match=field) as err:
        Secrets(**{**good, field: value})
    assert value not in str(err.value)


def test_sysctl_and_modules_files_match_the_python_data() -> None:
    cluster = _spec("ha")
    files = render_host(cluster, "w1", SECRETS, ca_cert_hash=HASH)
    sysctl = files["/etc/sysctl.d/99-capstan.conf"].text
    parsed = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split("=", 1) for ln in sysctl.splitlines() if ln and ln[0] != "#")
    )
    assert parsed == SYSCTLS
    assert parsed["net.ipv4.ip_local_reserved_ports"] == "30000-32767"
    modules = [
        ln for ln in files["/etc/modules-load.d/capstan.conf"].text.splitlines() if ln and ln[0] != "#"
    ]
    assert modules == modules_for(cluster)
    assert {"br_netfilter", "overlay", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"} <= set(
        modules
    )


def test_modules_follow_the_proxy_mode() -> None:
    iptables = modules_for(_spec("separate-etcd"))
    assert iptables == ["br_netfilter", "overlay"]
    nft = modules_for(_spec("ha", kubernetes={"version": "1.36.4", "proxyMode": "nftables"}))
    assert nft == ["br_netfilter", "overlay", "nf_tables"]


def test_containerd_config_is_v2_with_systemd_cgroups_and_pinned_pause() -> None:
    files = render_host(_spec("ha"), "w1", SECRETS, ca_cert_hash=HASH)
    conf = tomllib.loads(files["/etc/containerd/config.toml"].text)
    # Version 2: read by containerd 1.6/1.7 and migrated by 2.x (version 3 would be 2.x-only).
    assert conf["version"] == 2
    assert list(conf["plugins"]) == ["io.containerd.grpc.v1.cri", "io.containerd.gc.v1.scheduler"]
    # GC looked at once a second, not every few ms on an idle node (containerd#5089)
    assert conf["plugins"]["io.containerd.gc.v1.scheduler"] == {"pause_threshold": 0.0}
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.2"
    assert cri["registry"] == {"config_path": "/etc/containerd/certs.d"}
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["default_runtime_name"] == "runc"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2" and runc["options"]["SystemdCgroup"] is True
    crictl = yaml.safe_load(files["/etc/crictl.yaml"].text)
    assert crictl["runtime-endpoint"] == "unix:///run/containerd/containerd.sock"


def test_containerd_mirrors_and_insecure_registries() -> None:
    runtime = {
        "registryMirrors": {"docker.io": ["https://mirror.example.com", "http://cache.lan:5000/"]},
        "insecureRegistries": ["cache.lan:5000", "reg.lan:5000"],
    }
    files = render_host(_spec("ha", containerRuntime=runtime), "w1", SECRETS, ca_cert_hash=HASH)
    docker = tomllib.loads(files["/etc/containerd/certs.d/docker.io/hosts.toml"].text)
    assert docker["server"] == "https://registry-1.docker.io"
    assert list(docker["host"]) == ["https://mirror.example.com", "http://cache.lan:5000"]
    assert docker["host"]["https://mirror.example.com"]["capabilities"] == ["pull", "resolve"]
    assert "skip_verify" not in docker["host"]["https://mirror.example.com"]
    assert docker["host"]["http://cache.lan:5000"]["skip_verify"] is True
    insecure = tomllib.loads(files["/etc/containerd/certs.d/reg.lan:5000/hosts.toml"].text)
    assert insecure == {"server": "https://reg.lan:5000", "skip_verify": True}


@pytest.mark.parametrize("bad", ["../etc", "a/b", "bad name"])
def test_registry_names_that_would_escape_certs_d_are_rejected(bad: str) -> None:
    cluster = _spec("ha", containerRuntime={"registryMirrors": {bad: ["https://m.example"]}})
    with pytest.raises(RenderError, match=r"spec\.containerRuntime\.registryMirrors"):
        render_host(cluster, "w1", SECRETS, ca_cert_hash=HASH)


def test_crio_files() -> None:
    runtime = {"name": "cri-o", "registryMirrors": {"docker.io": ["https://mirror.example.com/v2-cache"]}}
    cluster = _spec("ha", containerRuntime=runtime)
    files = render_host(cluster, "w1", SECRETS, ca_cert_hash=HASH)
    assert "/etc/containerd/config.toml" not in files
    crio = tomllib.loads(files["/etc/crio/crio.conf.d/10-capstan.conf"].text)
    assert crio["crio"]["runtime"]["cgroup_manager"] == "systemd"
    assert crio["crio"]["image"]["pause_image"] == "registry.k8s.io/pause:3.10.2"
    regs = tomllib.loads(files["/etc/containers/registries.conf.d/10-capstan-mirrors.conf"].text)
    assert regs["registry"] == [
        {
            "prefix": "docker.io",
            "location": "docker.io",
            "insecure": False,
            "mirror": [{"location": "mirror.example.com/v2-cache", "insecure": False}],
        }
    ]
    assert (
        yaml.safe_load(files["/etc/crio/policy.json"].text)["default"][0]["type"] == "insecureAcceptAnything"
    )
    assert "ExecStart=/usr/local/bin/crio" in files["/etc/systemd/system/crio.service"].text
    assert "crio.service" in files["/etc/systemd/system/kubelet.service"].text
    kubeadm = yaml.safe_load(files["/etc/kubernetes/kubeadm-config.yaml"].text)
    assert kubeadm["nodeRegistration"]["criSocket"] == "unix:///var/run/crio/crio.sock"
    assert (
        yaml.safe_load(files["/etc/crictl.yaml"].text)["image-endpoint"] == "unix:///var/run/crio/crio.sock"
    )


def test_kubelet_units_follow_kubeadms_interface() -> None:
    files = render_host(_spec("ha"), "w1", SECRETS, ca_cert_hash=HASH)
    dropin = files["/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"].text
    assert "--config=/var/lib/kubelet/config.yaml" in dropin
    assert "--kubeconfig=/etc/kubernetes/kubelet.conf" in dropin
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin
    assert "$KUBELET_KUBEADM_ARGS" in dropin
    assert (
        "After=network-online.target containerd.service" in files["/etc/systemd/system/kubelet.service"].text
    )


def test_unknown_host_and_missing_join_pin_are_render_errors() -> None:
    cluster = _spec("ha")
    with pytest.raises(RenderError, match="nope"):
        render_host(cluster, "nope", SECRETS)
    with pytest.raises(RenderError, match=r"w1.*ca_cert_hash"):
        render_host(cluster, "w1", SECRETS)
    with pytest.raises(RenderError, match="ca_cert_hash"):
        render_host(cluster, "w1", SECRETS, ca_cert_hash="sha256:XYZ")
    render_host(cluster, "cp1", SECRETS)  # the first control plane joins nothing


def test_strict_undefined_names_the_template() -> None:
    with pytest.raises(RenderError, match=r"template etcd/etcd\.env\.j2: 'name' is undefined"):
        render_text("etcd/etcd.env.j2")
    with pytest.raises(RenderError, match=r"template nope\.j2: not found"):
        render_text("nope.j2")


def test_labels_the_kubelet_may_not_set_are_rejected_by_path() -> None:
    data = yaml.safe_load((ROOT / "examples" / "ha.yaml").read_text())
    data["spec"]["hosts"][3]["labels"] = {"node-role.kubernetes.io/worker": ""}
    with pytest.raises(RenderError, match=r"spec\.hosts\[3\]\.labels.*NodeRestriction"):
        render_host(parse_spec(data), "w1", SECRETS, ca_cert_hash=HASH)
    data["spec"]["hosts"][3]["labels"] = {"ok.example.com/pool": "a,b"}
    with pytest.raises(RenderError, match=r"spec\.hosts\[3\]\.labels"):
        render_host(parse_spec(data), "w1", SECRETS, ca_cert_hash=HASH)
    data["spec"]["hosts"][3]["labels"] = {"node.kubernetes.io/pool": "a", "topology.kubernetes.io/zone": "z1"}
    render_host(parse_spec(data), "w1", SECRETS, ca_cert_hash=HASH)


def test_external_endpoint_mode_renders_no_balancer_and_points_everything_at_the_lb() -> None:
    cluster = _spec(
        "ha", controlPlaneEndpoint={"mode": "external", "address": "api.example.com", "port": 443}
    )
    files = _all(cluster)
    assert not [p for f in files.values() for p in f if "kube-lb" in p or "keepalived" in p]
    init = list(yaml.safe_load_all(files["cp1"]["/etc/kubernetes/kubeadm-config.yaml"].text))
    assert init[1]["controlPlaneEndpoint"] == "api.example.com:443"
    assert "api.example.com" in init[1]["apiServer"]["certSANs"]
    for host in ("cp2", "w1"):
        join = yaml.safe_load(files[host]["/etc/kubernetes/kubeadm-config.yaml"].text)
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "api.example.com:443"
