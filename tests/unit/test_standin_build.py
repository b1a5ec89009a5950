"""Stand-in packaging: deterministic zipapps that embed their version and run on the system Python."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from capstan.lab.standins.build import build_standin, mirror_entries
from capstan.lab.standins.cni import manifest
from capstan.versions import supported_kubernetes_versions

SYSTEM_PYTHON = "/usr/bin/python3"


def test_build_is_deterministic_and_versioned() -> None:
    a = build_standin("kubeadm", "1.36.4")
    assert a == build_standin("kubeadm", "v1.36.4")
    assert hashlib.sha256(a).digest() != hashlib.sha256(build_standin("kubeadm", "1.36.3")).digest()
    assert a != build_standin("kubelet", "1.36.4")
    assert a.startswith(b"#!/usr/bin/python3\n")


def test_zipapp_holds_only_the_standins_and_a_generated_main() -> None:
    names = zipfile.ZipFile(io.BytesIO(build_standin("kube-apiserver", "1.36.4"))).namelist()
    assert "__main__.py" in names
    outside = [n for n in names if n != "__main__.py" and not n.startswith("capstan/lab/standins/")]
    assert outside == ["capstan/__init__.py", "capstan/lab/__init__.py"]
    main = zipfile.ZipFile(io.BytesIO(build_standin("kube-apiserver", "1.36.4"))).read("__main__.py").decode()
    assert "from capstan.lab.standins.apiserver import main" in main and "'1.36.4'" in main


def test_unknown_standin_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stand-in"):
        build_standin("kube-proxy", "1.36.4")


@pytest.mark.parametrize(
    ("name", "argv", "expected"),
    [
        ("kubeadm", ["version", "-o", "short"], "v1.36.4"),
        ("kubelet", ["--version"], "Kubernetes v1.36.4"),
        ("kube-apiserver", ["--version"], "Kubernetes v1.36.4"),
    ],
)
def test_built_standin_runs_on_the_system_python(
    tmp_path: Path, name: str, argv: list[str], expected: str
) -> None:
    exe = tmp_path / name
    exe.write_bytes(build_standin(name, "1.36.4"))
    exe.chmod(0o755)
    out = subprocess.run([SYSTEM_PYTHON, str(exe), *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
    direct = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=60)  # via the shebang
    assert direct.stdout.strip() == expected


def test_mirror_entries_follow_the_files_repo_layout() -> None:
    versions = supported_kubernetes_versions()[:2]
    entries = dict(mirror_entries(versions))
    for v in versions:
        for name in (
            "kubeadm",
            "kubelet",
            "kubectl",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ):
            assert f"dl.k8s.io/release/v{v}/bin/linux/amd64/{name}" in entries
    assert (
        entries[f"dl.k8s.io/release/v{versions[0]}/bin/linux/amd64/kubectl"]
        == Path("/usr/bin/kubectl").read_bytes()
    )
    cni = [p for p in entries if not p.startswith("dl.k8s.io/")]
    assert any(
        p.startswith("github.com/projectcalico/calico/raw/v") and p.endswith("/manifests/calico.yaml")
        for p in cni
    )
    assert any(p.endswith("/kube-flannel.yml") for p in cni)
    assert any(p.startswith("helm.cilium.io/cilium-") and p.endswith(".tgz") for p in cni)


@pytest.mark.parametrize("plugin", ["calico", "flannel", "cilium"])
def test_cni_standins_have_the_fields_capstan_edits(plugin: str) -> None:
    from capstan.render import adjust_cni_manifest
    from capstan.spec import parse_spec

    docs = list(yaml.safe_load_all(manifest(plugin, "1.0.0")))
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"} <= kinds
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "single.yaml").read_text())
    data["spec"]["network"] = {"plugin": plugin, "mtu": 1400}
    if plugin == "cilium":
        data["spec"]["kubernetes"] = {"proxyMode": "iptables"}
    edited = adjust_cni_manifest(parse_spec(data), docs)
    assert len(edited) == len(docs)
