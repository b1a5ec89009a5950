"""Pinned artifacts: the component versions that go with each Kubernetes release, and their sha256.

Why a table: every file capstan puts on a host is checked against a sha256 known *before* the download,
so a compromised mirror or a truncated transfer cannot reach a node. The table also answers "which
etcd/containerd/crictl goes with Kubernetes X", so a cluster spec only has to name the Kubernetes version.

Source of the facts (versions and sums, not code): kubernetes-sigs/kubespray @46dbdd3 (2026-08-21),
``roles/kubespray_defaults/vars/main/checksums.yml`` for the sha256 sums and Kubespray's pinned defaults
for the versions (k8s 1.36.4, etcd 3.6.14, containerd 2.3.4, runc 1.4.3, CNI plugins 1.9.1, calico
3.31.7, cilium 1.20.1, flannel 0.28.4, coredns 1.14.2, nodelocaldns 1.25.0, pause 3.10.2, metrics-server
0.8.1; cluster-proportional-autoscaler 1.8.8 from ``roles/kubespray_defaults/defaults/main/download.yml``,
unchanged from v2.29.0 to v2.31.0). crictl and cri-o follow Kubespray's rule: the newest release below
the next Kubernetes minor. The data is our own file, ``pins.yaml``, next to this module.

Manifests without a known sum: upstream publishes no sha256 for the calico/cilium/flannel manifests and
none is in the source, so the table holds ``null`` and :class:`Artifact` carries ``sha256=None`` rather
than an invented value. ``Artifact.sha256_known`` is then False and ``Artifact.require_sha256()`` raises
:class:`~capstan.errors.ArtifactError`. The artifact code must take such a sum from the user's
``spec.artifacts.extraChecksums.<name>.no_arch.<version>`` or from the mirror's sha256 list, and must
never download a file it has no sum for. The cilium "manifest" is the Helm chart archive: cilium
publishes no plain manifest.

Unlisted Kubernetes versions: ``extra_checksums`` (``{name: {arch: {version: sum}}}``, from the spec's
``artifacts.extraChecksums``) adds or overrides sums. When it gives kubeadm, kubelet and kubectl sums
for a version the table lacks, :func:`artifacts_for` accepts that version and borrows the other
components from the nearest listed release (same minor, else the newest or oldest listed).

Mirrors follow Kubespray's ``files_repo`` layout, ``<base>/<original-domain>/<original-path>``, so one
static web server can mirror every upstream: https://dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm
becomes https://mirror.example/dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from capstan.errors import ArtifactError
from capstan.versions._table import (
    ARCHES,
    ARTIFACT_NAMES,
    BINARY_ARTIFACTS,
    KUBE_BINARIES,
    MANIFEST_ARTIFACTS,
    NO_ARCH,
    PIN_FIELD_OF,
    load,
    version_key,
)

__all__ = [
    "ARCHES",
    "ARTIFACT_NAMES",
    "BINARY_ARTIFACTS",
    "CNIS",
    "KUBE_BINARIES",
    "MANIFEST_ARTIFACTS",
    "NO_ARCH",
    "RUNTIMES",
    "Artifact",
    "ComponentPins",
    "ExtraChecksums",
    "artifacts_for",
    "checksum",
    "default_kubernetes_version",
    "effective_pins",
    "has_checksums",
    "pins_for",
    "supported_kubernetes_versions",
    "table_rows",
    "validate_extra_checksums",
]

ExtraChecksums = Mapping[str, Mapping[str, Mapping[str, str]]]
"""User-supplied sums: artifact name -> arch (or ``no_arch``) -> version -> ``sha256:<hex>`` or hex."""

RUNTIMES = ("containerd", "crio")
CNIS = ("calico", "cilium", "flannel", "none")

_EXTRA_PATH = "spec.artifacts.extraChecksums"
_KUBE_VERSION = re.compile(r"v?(\d+\.\d+\.\d+)")
_SUM = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class Artifact:
    """One file a node needs: where it comes from and the sha256 it must have.

    ``sha256`` is a lowercase hex digest, or None when no trusted sum is known (see the module doc):
    never download such a file without first getting a sum from the user or the mirror.
    ``arch`` is ``no_arch`` for files that are the same on every architecture.
    """

    name: str
    version: str
    arch: str
    url: str
    filename: str
    sha256: str | None

    @property
    def sha256_known(self) -> bool:
        """False when the table and the user's extraChecksums have no sum for this file."""
        return self.sha256 is not None

    @property
    def cache_path(self) -> str:
        """A relative path unique per file (``filename`` alone is not: every kubeadm is "kubeadm")."""
        return f"{self.arch}/{self.name}/{self.version}/{self.filename}"

    def require_sha256(self) -> str:
        """The sum, or an ArtifactError that tells the user where to supply it."""
        if self.sha256 is None:
            raise ArtifactError(
                f"no sha256 known for {self.name} {self.version} ({self.arch}, {self.url}): add it under "
                f"{_EXTRA_PATH}.{self.name}.{self.arch}.{self.version} or to the mirror's sha256 list"
            )
        return self.sha256


@dataclass(frozen=True)
class ComponentPins:
    """The component versions capstan installs with one Kubernetes release (no leading "v")."""

    kubernetes: str
    etcd: str
    containerd: str
    runc: str
    crictl: str
    cni_plugins: str
    crio: str
    calico: str
    cilium: str
    flannel: str
    coredns: str
    nodelocaldns: str
    pause: str
    metrics_server: str
    cluster_proportional_autoscaler: str


def _kube(version: str) -> str:
    """Accept "1.36.4" or "v1.36.4" (the spec allows both); reject anything else by name."""
    match = _KUBE_VERSION.fullmatch(version.strip())
    if match is None:
        raise ArtifactError(f"kubernetes version {version!r} is not MAJOR.MINOR.PATCH (e.g. 1.36.4)")
    return match.group(1)


def _arch(arch: str) -> str:
    if arch not in ARCHES:
        raise ArtifactError(f"architecture {arch!r} is not supported; use one of {', '.join(ARCHES)}")
    return arch


def _name(name: str) -> str:
    if name not in ARTIFACT_NAMES:
        raise ArtifactError(f"unknown artifact {name!r}; known: {', '.join(ARTIFACT_NAMES)}")
    return name


def _parse_sum(value: object, where: str) -> str:
    match = _SUM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ArtifactError(f"{where}: expected a sha256 as 64 hex digits (optionally 'sha256:'-prefixed)")
    return match.group(1).lower()


def validate_extra_checksums(extra: ExtraChecksums | None) -> None:
    """Reject typos early: unknown artifact names, unknown arches and malformed sums, by spec path."""
    for name, by_arch in (extra or {}).items():
        if name not in ARTIFACT_NAMES:
            raise ArtifactError(f"{_EXTRA_PATH}.{name}: unknown artifact; known: {', '.join(ARTIFACT_NAMES)}")
        allowed = (NO_ARCH, *ARCHES) if name in MANIFEST_ARTIFACTS else ARCHES
        for arch, by_version in by_arch.items():
            if arch not in allowed:
                raise ArtifactError(f"{_EXTRA_PATH}.{name}.{arch}: arch must be one of {', '.join(allowed)}")
            for version, value in by_version.items():
                _parse_sum(value, f"{_EXTRA_PATH}.{name}.{arch}.{version}")


def supported_kubernetes_versions() -> list[str]:
    """Kubernetes versions with a full set of pins and sums, newest first."""
    return list(load().releases)


def default_kubernetes_version() -> str:
    """The newest supported version: what an empty ``spec.kubernetes.version`` means."""
    return next(iter(load().releases))


def pins_for(kube_version: str) -> ComponentPins:
    """The pinned component versions for a listed Kubernetes release; ArtifactError if unlisted."""
    version = _kube(kube_version)
    release = load().releases.get(version)
    if release is None:
        raise ArtifactError(
            f"kubernetes version {kube_version} is not in capstan's pinned table "
            f"(supported: {', '.join(supported_kubernetes_versions())})"
        )
    return ComponentPins(**release)


def effective_pins(kube_version: str) -> ComponentPins:
    """Pins for any version: the listed ones, else borrowed from the nearest listed release.

    Used for versions the user runs on their own sums. Nearest means the newest listed patch of the same
    minor, else the newest release if the version is newer than the table, else the oldest.
    """
    version = _kube(kube_version)
    releases = load().releases
    if version in releases:
        return ComponentPins(**releases[version])
    minor = version_key(version)[:2]
    listed = list(releases)
    same_minor = [v for v in listed if version_key(v)[:2] == minor]
    if same_minor:
        donor = same_minor[0]
    else:
        donor = listed[0] if version_key(version) > version_key(listed[0]) else listed[-1]
    return dataclasses.replace(ComponentPins(**releases[donor]), kubernetes=version)


def checksum(name: str, version: str, arch: str, extra: ExtraChecksums | None = None) -> str | None:
    """Hex sha256 (no prefix) of one file: the user's extra sum first, then the table; None if unknown.

    Manifests are architecture-independent: their sums live under ``no_arch`` (a user sum under the
    node's arch is accepted too), and ``arch`` need not be a supported architecture for them.
    """
    _name(name)
    version = version.removeprefix("v")
    keys = (NO_ARCH, arch) if name in MANIFEST_ARTIFACTS else (_arch(arch),)
    user = (extra or {}).get(name, {})
    for key in keys:
        for spelled in (version, f"v{version}"):
            if spelled in user.get(key, {}):
                return _parse_sum(user[key][spelled], f"{_EXTRA_PATH}.{name}.{key}.{spelled}")
    return load().sums.get(name, {}).get(keys[0], {}).get(version)


def has_checksums(kube_version: str, arch: str = "amd64", extra: ExtraChecksums | None = None) -> bool:
    """True when kubeadm, kubelet and kubectl of that version all have a sum for ``arch``."""
    version = _kube(kube_version)
    return all(checksum(name, version, arch, extra) is not None for name in KUBE_BINARIES)


def _url(name: str, version: str, arch: str, mirror: str | None) -> str:
    url = load().urls[name].format(version=version, arch=arch)
    if mirror is None:
        return url
    if not re.match(r"https?://[^/]+", mirror):
        raise ArtifactError(f"spec.artifacts.mirror: {mirror!r} is not an http(s) base URL")
    parts = urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def _artifact(
    name: str, version: str, arch: str, mirror: str | None, extra: ExtraChecksums | None
) -> Artifact:
    url = _url(name, version, arch, mirror)
    return Artifact(
        name=name,
        version=version,
        arch=NO_ARCH if name in MANIFEST_ARTIFACTS else arch,
        url=url,
        filename=urlsplit(url).path.rsplit("/", 1)[-1],
        sha256=checksum(name, version, arch, extra),
    )


def artifacts_for(
    kube_version: str,
    arch: str,
    *,
    mirror: str | None = None,
    extra_checksums: ExtraChecksums | None = None,
    runtime: str = "containerd",
    cni: str = "calico",
) -> list[Artifact]:
    """Every file a node of ``arch`` may need for ``kube_version``, with its URL and sum.

    The list covers all roles (etcd is included; callers skip it on hosts outside the etcd group). runc
    comes only with containerd: the cri-o archive ships its own runtimes. ``cni="none"`` adds no
    manifest. A version missing from the table is accepted only when ``extra_checksums`` gives its
    kubeadm, kubelet and kubectl sums for ``arch``; otherwise ArtifactError names the version.
    Binaries of listed versions always have a sum; a manifest may have ``sha256=None`` (module doc).
    """
    version = _kube(kube_version)
    _arch(arch)
    if runtime not in RUNTIMES:
        raise ArtifactError(
            f"container runtime {runtime!r} is not supported; use one of {', '.join(RUNTIMES)}"
        )
    if cni not in CNIS:
        raise ArtifactError(f"CNI {cni!r} has no pinned manifest; use one of {', '.join(CNIS)}")
    validate_extra_checksums(extra_checksums)
    if version not in load().releases and not has_checksums(version, arch, extra_checksums):
        raise ArtifactError(
            f"kubernetes version {kube_version} is not in capstan's pinned table and has no sha256 for "
            f"{', '.join(KUBE_BINARIES)} ({arch}); add them under {_EXTRA_PATH}.<name>.{arch}.{version} "
            f"or use one of {', '.join(supported_kubernetes_versions())}"
        )
    pins = dataclasses.asdict(effective_pins(version))
    names = [*KUBE_BINARIES, "etcd", runtime, *(["runc"] if runtime == "containerd" else []), "crictl"]
    names.append("cni-plugins")
    if cni != "none":
        names.append(f"{cni}-manifest")
    return [_artifact(name, pins[PIN_FIELD_OF[name]], arch, mirror, extra_checksums) for name in names]


def table_rows() -> list[dict[str, str]]:
    """One row per supported Kubernetes version (newest first), keyed by ComponentPins field name."""
    return [dataclasses.asdict(pins_for(version)) for version in supported_kubernetes_versions()]
