"""What the lab mirror serves by default: this machine's real binaries under upstream names.

The names, versions and URLs come from ``capstan.versions.artifacts_for`` (the pins capstan would
install), so the mirror answers the very URLs capstan asks for. The *contents* are the Debian builds
installed on this machine (etcd 3.4, containerd 1.6, runc 1.1, CNI plugins 1.1), packed in the
upstream archive layouts; the real upstream builds cannot be downloaded here. Their sums therefore
differ from the pinned ones, which is why the lab hands its sums to the spec as extraChecksums.

To re-point the mirror (another Kubernetes version, other local binaries), change ``LOCAL`` or call
:func:`default_entries` with another version; everything else follows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from capstan.lab.mirror import MirrorEntry, TarMember
from capstan.versions import Artifact, artifacts_for, default_kubernetes_version

CRICTL_SCRIPT = Path(__file__).with_name("files") / "crictl.sh"

LOCAL = {
    "etcd": [Path("/usr/bin/etcd"), Path("/usr/bin/etcdctl")],
    "containerd": [
        Path("/usr/bin/containerd"),
        Path("/usr/bin/ctr"),
        Path("/usr/bin/containerd-shim-runc-v2"),
    ],
    "runc": [Path("/usr/sbin/runc")],
    "cni-plugins": [Path("/usr/lib/cni") / p for p in ("bridge", "host-local", "loopback", "portmap")],
}
"""Machine files each artifact is packed from (Debian packages etcd-server/-client, containerd, runc,
containernetworking-plugins)."""


def _etcd(a: Artifact) -> tuple[TarMember, ...]:
    top = a.filename.removesuffix(".tar.gz")  # etcd-v<ver>-linux-<arch>/{etcd,etcdctl}
    return tuple(TarMember(f"{top}/{p.name}", p) for p in LOCAL["etcd"])


def _containerd(a: Artifact) -> tuple[TarMember, ...]:
    return tuple(TarMember(f"bin/{p.name}", p) for p in LOCAL["containerd"])


def _runc(a: Artifact) -> Path:
    return LOCAL["runc"][0]


def _crictl(a: Artifact) -> tuple[TarMember, ...]:
    script = CRICTL_SCRIPT.read_text().replace("@VERSION@", a.version)
    return (TarMember("crictl", script.encode()),)


def _cni(a: Artifact) -> tuple[TarMember, ...]:
    return tuple(TarMember(f"./{p.name}", p) for p in LOCAL["cni-plugins"])


PACKERS: dict[str, Callable[[Artifact], Path | tuple[TarMember, ...]]] = {
    "etcd": _etcd,
    "containerd": _containerd,
    "runc": _runc,
    "crictl": _crictl,
    "cni-plugins": _cni,
}


def missing_sources() -> dict[str, list[Path]]:
    """Artifacts whose machine files are absent (their entry is skipped)."""
    return {
        name: [p for p in paths if not p.exists()]
        for name, paths in LOCAL.items()
        if not all(p.exists() for p in paths)
    }


def mirror_path(url: str) -> str:
    """files_repo layout: https://github.com/a/b -> github.com/a/b."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def default_entries(kube_version: str | None = None, arch: str = "amd64") -> list[MirrorEntry]:
    """Mirror entries for the pinned etcd, containerd, runc, crictl and CNI plugins of a release.

    An artifact whose machine files are missing (e.g. containernetworking-plugins not installed) is
    left out; :func:`missing_sources` says which.
    """
    version = kube_version or default_kubernetes_version()
    skip = missing_sources()
    entries = []
    for art in artifacts_for(version, arch):
        packer = PACKERS.get(art.name)
        if packer is None or art.name in skip:
            continue
        entries.append(MirrorEntry(mirror_path(art.url), packer(art), (art.name, art.arch, art.version)))
    return entries


def standin_entries(versions: list[str], arch: str = "amd64") -> list[MirrorEntry]:
    """The Kubernetes stand-ins (kubeadm, kubelet, kubectl, kube-*) and CNI manifests for ``versions``.

    Tagged with their artifact names so their sums reach the spec's extraChecksums like any other
    artifact the mirror serves; capstan downloads and verifies them exactly as real binaries.
    """
    from capstan.lab.standins.build import mirror_entries

    tags: dict[str, tuple[str, str, str]] = {}
    for version in versions:
        for art in artifacts_for(version, arch, cni="calico") + [
            a for cni in ("cilium", "flannel") for a in artifacts_for(version, arch, cni=cni)
        ]:
            if art.name in ("kubeadm", "kubelet", "kubectl") or art.name.endswith("-manifest"):
                tags[mirror_path(art.url)] = (art.name, art.arch, art.version)
    return [MirrorEntry(path, data, tags.get(path)) for path, data in mirror_entries(versions, arch)]


def lab_entries(arch: str = "amd64") -> list[MirrorEntry]:
    """Everything the lab mirror serves: the machine's real binaries for the default release, and
    stand-ins for every supported release (so upgrades between pinned versions can be exercised)."""
    from capstan.versions import supported_kubernetes_versions

    return default_entries(arch=arch) + standin_entries(supported_kubernetes_versions(), arch)


def checksum_table(entries: list[MirrorEntry], sums: dict[str, str]) -> dict[str, dict[str, dict[str, str]]]:
    """``{artifact: {arch: {version: sha256}}}`` for entries tied to an artifact (spec extraChecksums)."""
    table: dict[str, dict[str, dict[str, str]]] = {}
    for e in entries:
        if e.artifact is not None and e.path in sums:
            name, arch, version = e.artifact
            table.setdefault(name, {}).setdefault(arch, {})[version] = sums[e.path]
    return table
