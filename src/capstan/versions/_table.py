"""Load and check ``pins.yaml`` once per process.

The table is packaged data, so a malformed file is a capstan bug; it is still checked field by field at
load time because a checksum table that silently drops an entry would let a download go unverified.
The public API lives in ``capstan.versions``; this module only turns YAML into plain, validated data.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from capstan.errors import ArtifactError

ARCHES = ("amd64", "arm64")
NO_ARCH = "no_arch"
"""Arch key for files that are the same on every architecture (CNI manifests), as in Kubespray."""

KUBE_BINARIES = ("kubeadm", "kubelet", "kubectl")
BINARY_ARTIFACTS = (*KUBE_BINARIES, "etcd", "containerd", "crio", "runc", "crictl", "cni-plugins")
MANIFEST_ARTIFACTS = ("calico-manifest", "cilium-manifest", "flannel-manifest")
ARTIFACT_NAMES = BINARY_ARTIFACTS + MANIFEST_ARTIFACTS

PIN_FIELDS = (
    "kubernetes",
    "etcd",
    "containerd",
    "runc",
    "crictl",
    "cni_plugins",
    "crio",
    "calico",
    "cilium",
    "flannel",
    "coredns",
    "nodelocaldns",
    "pause",
    "metrics_server",
    "cluster_proportional_autoscaler",
)

PIN_FIELD_OF = {
    "kubeadm": "kubernetes",
    "kubelet": "kubernetes",
    "kubectl": "kubernetes",
    "etcd": "etcd",
    "containerd": "containerd",
    "crio": "crio",
    "runc": "runc",
    "crictl": "crictl",
    "cni-plugins": "cni_plugins",
    "calico-manifest": "calico",
    "cilium-manifest": "cilium",
    "flannel-manifest": "flannel",
}
"""Which ComponentPins field gives the version of each artifact."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"\d+\.\d+\.\d+")
_FILE = "pins.yaml"


def version_key(version: str) -> tuple[int, ...]:
    """Numeric sort key, so 1.34.11 sorts after 1.34.9 (string order would not)."""
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Table:
    """The validated contents of pins.yaml. Internal: callers get copies through the public API."""

    urls: Mapping[str, str]
    releases: Mapping[str, Mapping[str, str]]  # kube version -> pin field -> version, newest first
    sums: Mapping[str, Mapping[str, Mapping[str, str | None]]]  # name -> arch -> version -> hex


def _fail(message: str) -> ArtifactError:
    return ArtifactError(f"capstan/versions/{_FILE}: {message}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(f"{where} must be a mapping with string keys")
    return value


def _version(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise _fail(f"{where} must be a quoted MAJOR.MINOR.PATCH string, got {value!r}")
    return value


def parse(raw: Any) -> Table:
    """Check the YAML document's shape and every value; return it as a Table."""
    doc = _mapping(raw, "the document")
    if doc.get("schema") != 1:
        raise _fail(f"schema must be 1, got {doc.get('schema')!r}")

    urls = _mapping(doc.get("urls"), "urls")
    if set(urls) != set(ARTIFACT_NAMES):
        raise _fail(f"urls must name exactly {', '.join(ARTIFACT_NAMES)}")
    for name, url in urls.items():
        if not isinstance(url, str) or not url.startswith("https://") or "{version}" not in url:
            raise _fail(f"urls.{name} must be an https URL containing {{version}}")

    releases: dict[str, dict[str, str]] = {}
    for kube, pins in _mapping(doc.get("kubernetes"), "kubernetes").items():
        _version(kube, f"kubernetes key {kube!r}")
        fields = _mapping(pins, f"kubernetes.{kube}")
        if set(fields) != set(PIN_FIELDS) - {"kubernetes"}:
            raise _fail(f"kubernetes.{kube} must list exactly {', '.join(PIN_FIELDS[1:])}")
        releases[kube] = {"kubernetes": kube}
        for field in PIN_FIELDS[1:]:
            releases[kube][field] = _version(fields[field], f"kubernetes.{kube}.{field}")
    if not releases:
        raise _fail("kubernetes lists no release")

    sums: dict[str, dict[str, dict[str, str | None]]] = {}
    for name, by_arch in _mapping(doc.get("checksums"), "checksums").items():
        if name not in ARTIFACT_NAMES:
            raise _fail(f"checksums.{name} is not a known artifact")
        allowed = {NO_ARCH} if name in MANIFEST_ARTIFACTS else set(ARCHES)
        sums[name] = {}
        for arch, by_version in _mapping(by_arch, f"checksums.{name}").items():
            if arch not in allowed:
                raise _fail(f"checksums.{name}.{arch}: arch must be one of {', '.join(sorted(allowed))}")
            sums[name][arch] = {}
            for ver, digest in _mapping(by_version, f"checksums.{name}.{arch}").items():
                _version(ver, f"checksums.{name}.{arch} key {ver!r}")
                if digest is not None and (not isinstance(digest, str) or not _HEX64.fullmatch(digest)):
                    raise _fail(f"checksums.{name}.{arch}.{ver} must be 64 lowercase hex digits or null")
                sums[name][arch][ver] = digest

    ordered = dict(sorted(releases.items(), key=lambda item: version_key(item[0]), reverse=True))
    return Table(urls=dict(urls), releases=ordered, sums=sums)


@functools.cache
def load() -> Table:
    """Read the packaged pins.yaml once; every caller shares the result (it is never mutated)."""
    text = importlib.resources.files("capstan.versions").joinpath(_FILE).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(f"not valid YAML: {exc}") from exc
    return parse(raw)
