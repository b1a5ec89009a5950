"""The CNI manifest: the pinned upstream release file, downloaded once, sha256-checked, then edited.

Upstream publishes no sum for the calico/flannel/cilium manifests (see ``capstan.versions``), so the sum
comes from the user (``spec.artifacts.extraChecksums``) or, with a mirror, from the mirror's
``sha256sums.txt`` (the same list an offline mirror serves for every file). A file with no sum from
either is never downloaded. A verified copy is kept in the artifacts cache, keyed by name, version and
sum, so a converged re-run does not download again.

The cilium release is a Helm chart archive; capstan does not render Helm charts, so a gzip archive is
refused with a message saying so rather than applied as garbage.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from capstan.errors import ArtifactError
from capstan.render import adjust_cni_manifest
from capstan.spec.models import Cluster
from capstan.versions import ARCHES, Artifact, artifacts_for

SUMS_FILE = "sha256sums.txt"
_TIMEOUT = 60.0
_GZIP = b"\x1f\x8b"


def manifest_artifact(cluster: Cluster) -> Artifact:
    """The pinned manifest of ``spec.network.plugin``."""
    plugin = cluster.spec.network.plugin
    art = cluster.spec.artifacts
    errors: list[str] = []
    for arch in ARCHES:  # manifests are the same on every architecture; any listed arch routes them
        try:
            found = artifacts_for(
                cluster.spec.kubernetes.version,
                arch,
                mirror=art.mirror,
                extra_checksums=art.extra_checksums,
                cni=plugin,
            )
        except ArtifactError as exc:
            errors.append(str(exc))
            continue
        return next(a for a in found if a.name == f"{plugin}-manifest")
    raise ArtifactError(errors[0])


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ArtifactError(f"cannot download {url}: {reason}") from None


def mirror_sum(artifact: Artifact, mirror: str | None) -> str | None:
    """The sum the mirror lists for ``artifact`` (None without a mirror or when it is not listed)."""
    if not mirror:
        return None
    base = mirror.rstrip("/")
    if not artifact.url.startswith(base + "/"):
        return None
    rel = artifact.url[len(base) + 1 :]
    for line in _get(f"{base}/{SUMS_FILE}").decode("utf-8", "replace").splitlines():
        hexsum, _, path = line.strip().partition("  ")
        if path == rel and len(hexsum) == 64:
            return hexsum.lower()
    return None


def fetch_verified(artifact: Artifact, sha256: str, cache_dir: Path) -> bytes:
    """The bytes of ``artifact`` with exactly ``sha256``: from the cache, else downloaded and cached."""
    cached = cache_dir / artifact.cache_path
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    data = _get(artifact.url)
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ArtifactError(f"sha256 mismatch for {artifact.url}: expected {sha256}, got {got}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data


def parse_manifest(artifact: Artifact, data: bytes) -> list[dict[str, Any]]:
    """The documents of a YAML manifest; a Helm chart archive or non-object documents are refused."""
    if data[:2] == _GZIP:
        raise ArtifactError(
            f"{artifact.name} {artifact.version}: {artifact.filename} is a Helm chart archive; "
            "capstan applies plain manifests only (use calico or flannel, or apply the chart yourself)"
        )
    try:
        docs = [d for d in yaml.safe_load_all(data) if d is not None]
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{artifact.url}: not a YAML manifest ({exc.__class__.__name__})") from None
    if not all(isinstance(d, dict) for d in docs):
        raise ArtifactError(f"{artifact.url}: a document is not a Kubernetes object")
    return docs


def cni_objects(cluster: Cluster, cache_dir: Path) -> list[dict[str, Any]]:
    """The CNI's objects ready to apply: fetched once, verified, edited for the spec."""
    artifact = manifest_artifact(cluster)
    sha256 = artifact.sha256 or mirror_sum(artifact, cluster.spec.artifacts.mirror)
    if sha256 is None:
        artifact.require_sha256()  # raises, naming where to add the sum
        raise AssertionError("unreachable")
    docs = parse_manifest(artifact, fetch_verified(artifact, sha256, cache_dir))
    return adjust_cni_manifest(cluster, docs)
