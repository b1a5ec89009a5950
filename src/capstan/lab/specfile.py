"""The lab's ready-to-use ``cluster.yaml`` and ``known_hosts``.

Why the lab writes them: a lab is only useful if capstan can be pointed at it exactly as at real
machines, with nothing lab-specific outside ``capstan.lab``. The spec is checked with the real spec
loader before a host is created (a topology the spec rejects fails early) and again once written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from capstan.errors import LabError, SpecError
from capstan.spec import API_VERSION, load_spec, parse_spec
from capstan.spec.models import Artifacts

Checksums = dict[str, dict[str, dict[str, str]]]


def spec_supports_extra_checksums() -> bool:
    """True when the spec schema has ``artifacts.extraChecksums`` (it is added only if it exists)."""
    return "extra_checksums" in Artifacts.model_fields


def spec_document(
    *,
    name: str,
    hosts: list[tuple[str, str, list[str]]],
    key_path: Path,
    known_hosts_path: Path,
    mirror_url: str | None,
    checksums: Checksums,
) -> dict[str, Any]:
    """The cluster spec as a plain document; ``hosts`` are (name, ip, roles)."""
    spec: dict[str, Any] = {
        "ssh": {"user": "root", "keyPath": str(key_path), "knownHostsPath": str(known_hosts_path)},
        # Lab hosts are namespaces on one kernel: vm.*/kernel.*/fs.* sysctls are machine-wide.
        "os": {"sharedKernel": True},
        "hosts": [{"name": n, "address": ip, "ip": ip, "roles": list(roles)} for n, ip, roles in hosts],
    }
    if mirror_url:
        artifacts: dict[str, Any] = {"mirror": mirror_url, "mode": "pull"}
        if checksums and spec_supports_extra_checksums():
            artifacts["extraChecksums"] = checksums
        spec["artifacts"] = artifacts
    return {"apiVersion": API_VERSION, "kind": "Cluster", "metadata": {"name": name}, "spec": spec}


def check_document(doc: dict[str, Any]) -> None:
    """Validate with the spec loader; a rejection is a LabError that keeps the spec's path."""
    try:
        parse_spec(doc, source="lab cluster spec")
    except SpecError as exc:
        raise LabError(f"the lab's cluster spec would be invalid: {exc}") from None


def write_spec(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    try:
        load_spec(path)
    except SpecError as exc:
        raise LabError(f"{path}: the lab wrote a spec the loader rejects: {exc}") from None
    return path


def known_hosts(entries: list[tuple[str, str, str]]) -> str:
    """OpenSSH known_hosts lines for (name, ip, public key); both the name and the IP are listed."""
    lines = []
    for name, ip, pub in entries:
        keytype, blob = pub.split()[:2]
        lines.append(f"{name},{ip} {keytype} {blob}")
    return "\n".join(lines) + "\n"
