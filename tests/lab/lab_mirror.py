"""The mirror for lab tests that create a cluster at the default version: the lab's default entries
plus that version's Kubernetes stand-ins (kubeadm, kubelet, kubectl tied to their pinned artifacts)."""

from __future__ import annotations

from capstan.lab.artifacts import default_entries
from capstan.lab.mirror import MirrorEntry
from capstan.lab.standins.build import mirror_entries as standin_entries
from capstan.versions import default_kubernetes_version


def mirror_entries() -> list[MirrorEntry]:
    version = default_kubernetes_version()
    entries = list(default_entries(version))
    have = {e.path for e in entries}
    for path, data in standin_entries([version]):
        name = path.rsplit("/", 1)[-1]
        if path not in have:
            artifact = (name, "amd64", version) if name in ("kubeadm", "kubelet", "kubectl") else None
            entries.append(MirrorEntry(path, data, artifact))
    return entries
