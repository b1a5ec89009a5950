"""Packaging the stand-ins for the lab mirror: one executable zipapp per binary and Kubernetes version.

``build_standin(name, version)`` gives the bytes of ``kubeadm``, ``kubelet``, ``kube-apiserver``,
``kube-controller-manager`` or ``kube-scheduler``: ``#!/usr/bin/python3`` plus a zip of the
``capstan/lab/standins`` sources and a generated ``__main__.py`` that calls the component's
``main(argv, "<version>")``. Zip entries have fixed times and modes and are stored uncompressed, so the
same sources and version always give the same bytes (and sha256), and a different version never does.

``mirror_entries(versions)`` lists ``(relative path, bytes)`` in the files_repo layout the lab mirror
serves (``dl.k8s.io/release/v<ver>/bin/linux/<arch>/<name>``, where upstream publishes the same
binaries; kubectl is a copy of this machine's real ``/usr/bin/kubectl``), plus the CNI manifest
stand-ins at the upstream paths of the pinned calico/flannel/cilium releases. The control-plane
binaries are listed for completeness: on a host, the kubeadm stand-in writes them itself (its "image
pull"), since it carries the whole package.

This module runs on the machine, not on hosts; it is the only stand-in module that imports capstan.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from capstan.lab.standins import COMPONENTS, make_zipapp, package_files, plain_version
from capstan.lab.standins.cni import manifest
from capstan.versions import artifacts_for

KUBECTL = Path("/usr/bin/kubectl")
BINARIES = ("kubeadm", "kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
CNI_PLUGINS = ("calico", "flannel", "cilium")


def build_standin(name: str, version: str) -> bytes:
    """The executable zipapp of stand-in ``name`` that reports Kubernetes ``version``."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown stand-in {name!r}; known: {', '.join(COMPONENTS)}")
    return make_zipapp(package_files(), name, plain_version(version))


def _mirror_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def mirror_entries(versions: list[str], arch: str = "amd64") -> list[tuple[str, bytes]]:
    """Every stand-in file the lab mirror serves for ``versions``, by files_repo relative path."""
    files = package_files()
    kubectl = KUBECTL.read_bytes()
    entries: dict[str, bytes] = {}
    for raw in versions:
        version = plain_version(raw)
        base = f"dl.k8s.io/release/v{version}/bin/linux/{arch}"
        for name in BINARIES:
            entries[f"{base}/{name}"] = make_zipapp(files, name, version)
        entries[f"{base}/kubectl"] = kubectl
        for plugin in CNI_PLUGINS:
            for art in artifacts_for(version, arch, cni=plugin):
                if art.name == f"{plugin}-manifest":
                    entries[_mirror_path(art.url)] = manifest(plugin, art.version)
    return sorted(entries.items())
