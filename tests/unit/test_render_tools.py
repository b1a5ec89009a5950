"""Rendered configs checked by the real programs that will read them (haproxy, nginx, keepalived,
systemd, etcd, containerd), not by string matching. A missing program skips its test with the reason."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.errors import RenderError
from capstan.render import Backend, Secrets, etcd_env, lb_backends, render_host
from capstan.render.lb import keepalived_priority
from capstan.spec import Cluster, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SECRETS = Secrets(base64.b64encode(bytes(range(32))).decode(), "abcdef.0123456789abcdef")
HASH = "sha256:" + "ab" * 32


def _spec(example: str = "ha", **spec_changes: Any) -> Cluster:
    data = yaml.safe_load((ROOT / "examples" / f"{example}.yaml").read_text())
    data["spec"].update(spec_changes)
    return parse_spec(data)


def _tool(name: str, *candidates: str) -> str:
    for path in (*candidates, shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip(f"{name} is not installed on this machine")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_lb_backends_are_every_control_plane() -> None:
    assert lb_backends(_spec("ha")) == [
        Backend("cp1", "192.0.2.11", 6443),
        Backend("cp2", "192.0.2.12", 6443),
        Backend("cp3", "192.0.2.13", 6443),
    ]


def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    haproxy = _tool("haproxy", "/usr/sbin/haproxy")
    files = render_host(_spec("ha"), "w1", SECRETS, ca_cert_hash=HASH)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(files["/etc/kube-lb/haproxy.cfg"].text)
    result = _run([haproxy, "-c", "-f", str(cfg)])
    assert result.returncode == 0, result.stdout + result.stderr
    text = cfg.read_text()
    # The balancer's own port on loopback; the apiservers behind it on the apiserver port.
    assert "bind 127.0.0.1:6444\n" in text
    for b in ("cp1 192.0.2.11:6443", "cp2 192.0.2.12:6443", "cp3 192.0.2.13:6443"):
        assert f"server {b}\n" in text
    unit = files["/etc/systemd/system/kube-apiserver-lb.service"].text
    assert "-f /etc/kube-lb/haproxy.cfg" in unit


def test_haproxy_check_catches_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a config with a typo is rejected."""
    haproxy = _tool("haproxy", "/usr/sbin/haproxy")
    files = render_host(_spec("ha"), "w1", SECRETS, ca_cert_hash=HASH)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(files["/etc/kube-lb/haproxy.cfg"].text.replace("balance leastconn", "balance leastconnx"))
    assert _run([haproxy, "-c", "-f", str(cfg)]).returncode != 0


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = _tool("nginx", "/usr/sbin/nginx")
    cluster = _spec("ha", controlPlaneEndpoint={"localLb": "nginx"})
    files = render_host(cluster, "w2", SECRETS, ca_cert_hash=HASH)
    text = files["/etc/kube-lb/nginx.conf"].text
    # The unit's RuntimeDirectory creates the pid directory; the test points it at its own.
    cfg = tmp_path / "nginx.conf"
    cfg.write_text(text.replace("/run/kube-apiserver-lb/nginx.pid", str(tmp_path / "nginx.pid")))
    result = _run([nginx, "-t", "-c", str(cfg)])
    if 'unknown directive "stream"' in result.stderr:
        pytest.skip("nginx's stream module is not installed (Debian: libnginx-mod-stream)")
    assert result.returncode == 0, result.stderr
    assert "listen 127.0.0.1:6444;" in text
    assert "server 192.0.2.13:6443 max_fails=1 fail_timeout=10s;" in text
    # Control planes run the same balancer (their apiserver binds 0.0.0.0:6443, so the ports differ).
    assert render_host(cluster, "cp1", SECRETS)["/etc/kube-lb/nginx.conf"].text == text
    unit = files["/etc/systemd/system/kube-apiserver-lb.service"].text
    assert "ExecStart=/usr/sbin/nginx -c /etc/kube-lb/nginx.conf" in unit


def test_keepalived_accepts_the_config_on_each_control_plane(tmp_path: Path) -> None:
    keepalived = _tool("keepalived", "/usr/sbin/keepalived")
    cluster = _spec("separate-etcd")
    for i, cp in enumerate(cluster.control_planes):
        conf = tmp_path / f"{cp.name}.conf"
        conf.write_text(
            render_host(cluster, cp.name, SECRETS, ca_cert_hash=HASH)["/etc/keepalived/keepalived.conf"].text
        )
        result = _run([keepalived, "-t", "-f", str(conf)])
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "Unknown keyword" not in output, output
        text = conf.read_text()
        assert f"priority {keepalived_priority(i)}" in text
        assert "192.0.2.100/32 dev eth0" in text
        assert f"unicast_src_ip {cp.bind_ip}" in text
        # The track script asks this host's own apiserver, on the apiserver port.
        assert "https://127.0.0.1:6443/livez" in text
    assert keepalived_priority(0) > keepalived_priority(1) >= 1
    moved = _spec(
        "separate-etcd",
        kubernetes={"version": "1.36.4", "proxyMode": "iptables", "apiserverPort": 8443},
        controlPlaneEndpoint={"mode": "vip", "address": "192.0.2.100"},
    )
    text = render_host(moved, "cp1", SECRETS)["/etc/keepalived/keepalived.conf"].text
    assert "https://127.0.0.1:8443/livez" in text and "6443" not in text and "6444" not in text


def test_keepalived_rejects_a_bad_interface_name() -> None:
    cluster = _spec(
        "separate-etcd",
        controlPlaneEndpoint={"mode": "vip", "address": "192.0.2.100", "vip": {"interface": "eth0 }"}},
    )
    with pytest.raises(RenderError, match=r"spec\.controlPlaneEndpoint\.vip\.interface"):
        render_host(cluster, "cp1", SECRETS)


def test_containerd_1_6_reads_the_config(tmp_path: Path) -> None:
    """Debian's containerd 1.6 (the lab's) takes the file and applies our settings to its CRI plugin.

    ``config dump`` prints the configuration containerd would run with. It accepts unknown sections
    silently (a version 3 file passes, with the CRI plugin left at its defaults), so the test reads the
    CRI plugin's effective settings from the dump rather than trusting the exit code alone.
    """
    containerd = _tool("containerd", "/usr/bin/containerd")
    files = render_host(_spec("ha"), "w1", SECRETS, ca_cert_hash=HASH)
    cfg = tmp_path / "config.toml"
    cfg.write_text(files["/etc/containerd/config.toml"].text)
    result = _run([containerd, "--config", str(cfg), "config", "dump"])
    assert result.returncode == 0, result.stderr
    assert "SystemdCgroup = true" in result.stdout
    assert 'sandbox_image = "registry.k8s.io/pause:3.10.2"' in result.stdout
    cri = tomllib.loads(result.stdout)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.2"
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["default_runtime_name"] == "runc"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2" and runc["options"]["SystemdCgroup"] is True
    # config_path and the legacy mirrors table exclude each other in the CRI plugin.
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert not cri["registry"].get("mirrors")


class _Mirror(BaseHTTPRequestHandler):
    """A registry mirror that serves one manifest for library/pause:3.10 and records every request."""

    manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    seen: list[str] = []

    def _answer(self, body: bool) -> None:
        self.seen.append(self.path)
        path = self.path.split("?", 1)[0]
        if path not in ("/v2/library/pause/manifests/3.10", f"/v2/library/pause/manifests/{self.digest}"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Docker-Content-Digest", self.digest)
        self.send_header("Content-Length", str(len(self.manifest)))
        self.end_headers()
        if body:
            self.wfile.write(self.manifest)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mirror() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    _Mirror.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_containerd_1_6_pulls_through_the_rendered_mirror(tmp_path: Path, mirror: str) -> None:
    """The hosts.toml files that config_path points at are read by containerd 1.6's resolver.

    ``ctr --hosts-dir`` uses the same hosts.toml code as the CRI plugin's ``config_path`` and needs no
    daemon; the mirror is local, so nothing leaves the machine (Docker Hub itself is never asked).
    """
    ctr = _tool("ctr", "/usr/bin/ctr")
    cluster = _spec("ha", containerRuntime={"registryMirrors": {"docker.io": [mirror]}})
    certs_d = tmp_path / "certs.d"
    for path, f in render_host(cluster, "w1", SECRETS, ca_cert_hash=HASH).items():
        if path.startswith("/etc/containerd/certs.d/"):
            target = certs_d / path.removeprefix("/etc/containerd/certs.d/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.text)
    assert (certs_d / "docker.io" / "hosts.toml").is_file()
    result = _run(
        [ctr, "content", "fetch-object", "--hosts-dir", str(certs_d), "docker.io/library/pause:3.10"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode() == _Mirror.manifest
    assert "/v2/library/pause/manifests/3.10?ns=docker.io" in _Mirror.seen


def test_systemd_accepts_every_unit_and_drop_in(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    units = tmp_path / "units"
    for cluster, host in (
        (_spec("ha"), "cp1"),
        (_spec("ha"), "w1"),
        (_spec("ha", containerRuntime={"name": "cri-o"}), "w2"),
    ):
        for path, f in render_host(cluster, host, SECRETS, ca_cert_hash=HASH).items():
            if path.startswith("/etc/systemd/system/"):
                target = units / path.removeprefix("/etc/systemd/system/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f.text)
    names = sorted(p.name for p in units.glob("*.service"))
    assert names == [
        "containerd.service",
        "crio.service",
        "etcd.service",
        "kube-apiserver-lb.service",
        "kubelet.service",
    ]
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}
    result = subprocess.run(
        [analyze, "verify", *(str(units / n) for n in names)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # The binaries are not installed here; anything else systemd says is a problem in a unit.
    problems = [
        ln for ln in (result.stdout + result.stderr).splitlines() if ln and "is not executable" not in ln
    ]
    assert problems == []


def _etcd_flags(etcd: str) -> set[str]:
    result = _run([etcd, "--help"])
    help_text = result.stdout + result.stderr
    return set(re.findall(r"^\s+--([a-z0-9-]+)", help_text, re.M))


def test_every_etcd_variable_is_a_flag_of_the_installed_etcd() -> None:
    etcd = _tool("etcd", "/usr/local/bin/etcd", "/usr/bin/etcd")
    flags = _etcd_flags(etcd)
    assert "initial-cluster" in flags
    env = etcd_env(_spec("ha"), "cp1").text
    names = [ln.split("=", 1)[0] for ln in env.splitlines() if ln and not ln.startswith("#")]
    assert names and all(n.startswith("ETCD_") for n in names)
    unknown = [n for n in names if n.removeprefix("ETCD_").lower().replace("_", "-") not in flags]
    assert unknown == []


def _env(text: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))


def test_etcd_env_contents() -> None:
    cluster = _spec("ha")
    env = _env(etcd_env(cluster, "cp2").text)
    assert env["ETCD_NAME"] == "cp2"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "https://192.0.2.12:2379,https://127.0.0.1:2379"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://192.0.2.12:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == "https://192.0.2.12:2380"
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "cp1=https://192.0.2.11:2380,cp2=https://192.0.2.12:2380,cp3=https://192.0.2.13:2380"
    )
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "prod-etcd"
    assert env["ETCD_CERT_FILE"] == "/etc/ssl/etcd/member.crt"
    assert env["ETCD_PEER_KEY_FILE"] == "/etc/ssl/etcd/peer.key"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_AUTO_COMPACTION_MODE"] == "periodic"
    assert env["ETCD_QUOTA_BACKEND_BYTES"] == str(2 * 1024**3)
    files = render_host(cluster, "cp2", SECRETS, ca_cert_hash=HASH)
    unit = files["/etc/systemd/system/etcd.service"].text
    for line in (
        "User=etcd",
        "Type=notify",
        "EnvironmentFile=/etc/etcd.env",
        "ExecStart=/usr/local/bin/etcd",
        "Restart=always",
        "LimitNOFILE=65536",
    ):
        assert line in unit.splitlines()
    ctl = _env(files["/etc/etcdctl.env"].text)
    assert ctl == {
        "ETCDCTL_API": "3",
        "ETCDCTL_ENDPOINTS": "https://127.0.0.1:2379",
        "ETCDCTL_CACERT": "/etc/ssl/etcd/ca.crt",
        "ETCDCTL_CERT": "/etc/ssl/etcd/etcdctl.crt",
        "ETCDCTL_KEY": "/etc/ssl/etcd/etcdctl.key",
    }


def test_etcd_env_for_membership_changes() -> None:
    cluster = _spec("ha")
    cp1, cp2, cp3 = cluster.control_planes
    env = _env(etcd_env(cluster, cp3, initial_state="existing", members=[cp1, cp3]).text)
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert env["ETCD_INITIAL_CLUSTER"] == "cp1=https://192.0.2.11:2380,cp3=https://192.0.2.13:2380"
    with pytest.raises(RenderError, match=r"cp3.*not in the member list"):
        etcd_env(cluster, cp3, members=[cp1, cp2])
    with pytest.raises(RenderError, match="w1 does not have the etcd role"):
        etcd_env(cluster, "w1")
