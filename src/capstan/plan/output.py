"""``capstan plan --out DIR``: every file create-cluster would place, per host, without touching a host.

Layout: ``DIR/plan.json``; ``DIR/hosts/<host>/<absolute path>`` for the rendered configuration and the
PKI material each host receives (private keys and other secrets mode 0600); ``DIR/addons/*.yaml`` for
the manifests applied through the API. The PKI and secrets are freshly generated for the preview: a real
run loads the cluster's existing CA from its first control plane instead, so these keys are throwaway.
DIR itself is made 0700 because it holds private keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from capstan.errors import CapstanError
from capstan.pki import cluster_ca_pem, files_for_host, generate
from capstan.plan.material import pki_inputs
from capstan.plan.phases import create_plan
from capstan.plan.show import plan_json
from capstan.render import ca_cert_hash, new_secrets, render_addons, render_host
from capstan.spec.models import Cluster


def _write(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # the umask may have narrowed it; be exact
    os.replace(tmp, path)


def write_plan_output(cluster: Cluster, out: Path) -> int:
    """Write the plan, every host's files and the addon manifests under ``out``; return the file count."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o700)
    except OSError as exc:
        raise CapstanError(f"--out {out}: cannot create directory: {exc.strerror}") from None
    pki, _issued = generate(pki_inputs(cluster))
    secrets = new_secrets()
    ca_hash = ca_cert_hash(cluster_ca_pem(pki))
    count = 0
    _write(out / "plan.json", (plan_json(cluster, create_plan(cluster)) + "\n").encode(), 0o644)
    count += 1
    for host in cluster.hosts:
        base = out / "hosts" / host.name
        for path, pf in files_for_host(pki, host.name).items():
            _write(base / path.lstrip("/"), pf.content, pf.mode)
            count += 1
        for path, rf in render_host(cluster, host.name, secrets, ca_cert_hash=ca_hash).items():
            _write(base / path.lstrip("/"), rf.content, rf.mode)
            count += 1
    for i, doc in enumerate(render_addons(cluster), 1):
        meta = doc.get("metadata", {})
        name = f"{i:02d}-{doc.get('kind', 'object').lower()}-{meta.get('name', 'unnamed')}.yaml"
        _write(out / "addons" / name, yaml.safe_dump(doc, sort_keys=False).encode(), 0o644)
        count += 1
    return count
