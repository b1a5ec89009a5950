"""Lab-only stand-ins for the Kubernetes binaries no registry here ships (kubeadm, kubelet, kube-*).

Why they exist: the lab runs everything else for real (sshd, systemd units under the emulator, etcd
with TLS, haproxy, containerd), but kubeadm, kubelet and the control-plane images cannot be had. Each
stand-in is one executable zipapp holding this whole package plus a ``__main__`` that calls
``capstan.lab.standins.<module>.main(argv, version)``: the version is baked in, so every Kubernetes
release yields different bytes (and sha256) and an upgrade really changes what runs.

This module is shared by the builder on the machine (``build.py``) and by the stand-ins on the hosts
(kubeadm materialises the control-plane "images"; the kubelet runs them), so it uses the standard
library only: hosts run Debian's ``/usr/bin/python3`` with nothing but PyYAML and cryptography.
"""

from __future__ import annotations

import io
import os
import zipfile
import zipimport
from collections.abc import Mapping
from pathlib import Path

COMPONENTS: dict[str, str] = {
    "kubeadm": "capstan.lab.standins.kubeadm",
    "kubelet": "capstan.lab.standins.kubelet",
    "kube-apiserver": "capstan.lab.standins.apiserver",
    "kube-controller-manager": "capstan.lab.standins.apiserver.controller",
    "kube-scheduler": "capstan.lab.standins.apiserver.scheduler",
}
"""Stand-in name -> module whose ``main(argv: list[str], version: str) -> int`` is the entry point."""

CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
IMAGE_REPOSITORY = "registry.k8s.io"
IMAGE_DIR = "/usr/local/lib/capstan-standins"
"""Where kubeadm puts the control-plane "images" (one executable per component and version) and where
the kubelet looks for them: ``<IMAGE_DIR>/v<version>/<component>``."""

SHEBANG = b"#!/usr/bin/python3\n"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_PACKAGE = "capstan/lab/standins"
_ROOT_ENV = "CAPSTAN_STANDIN_ROOT"


def host_root() -> Path:
    """The filesystem root the stand-ins act on: ``/`` on a host, a temporary folder in unit tests."""
    return Path(os.environ.get(_ROOT_ENV) or "/")


def host_path(path: str) -> Path:
    """An absolute host path (``/etc/kubernetes/...``) under :func:`host_root`."""
    return host_root() / path.lstrip("/")


def is_real_root() -> bool:
    """True on a lab host; False in tests (then no systemctl, no process management of the machine)."""
    return host_root() == Path("/")


def plain_version(version: str) -> str:
    return version.strip().removeprefix("v")


def executable_path(component: str, version: str) -> Path:
    """Where the stand-in "image" of ``component`` at ``version`` lives on a host."""
    return host_path(f"{IMAGE_DIR}/v{plain_version(version)}/{component}")


def main_source(name: str, version: str) -> str:
    """The generated ``__main__.py`` of one stand-in: the version is a literal, so bytes differ by it."""
    module = COMPONENTS[name]
    return (
        f"# {name} stand-in v{plain_version(version)} (capstan lab)\n"
        "import sys\n\n"
        f"from {module} import main\n\n"
        f"sys.exit(main(sys.argv[1:], {plain_version(version)!r}))\n"
    )


def package_files() -> dict[str, bytes]:
    """The stand-in sources by archive name (``capstan/lab/standins/...py``), from disk or own zipapp.

    The empty ``capstan/__init__.py`` and ``capstan/lab/__init__.py`` are generated: the real ones
    import capstan modules that do not exist on hosts.
    """
    files = {"capstan/__init__.py": b"", "capstan/lab/__init__.py": b""}
    loader = globals().get("__loader__")
    if isinstance(loader, zipimport.zipimporter):
        with zipfile.ZipFile(loader.archive) as zf:
            for name in zf.namelist():
                if name.startswith(_PACKAGE + "/") and name.endswith(".py"):
                    files[name] = zf.read(name)
        return files
    here = Path(__file__).resolve().parent
    for path in sorted(here.rglob("*.py")):
        if "__pycache__" not in path.parts:
            files[f"{_PACKAGE}/{path.relative_to(here).as_posix()}"] = path.read_bytes()
    return files


def make_zipapp(files: Mapping[str, bytes], name: str, version: str) -> bytes:
    """A deterministic executable zipapp: fixed times and modes, sorted names, stored (no zlib drift)."""
    if name not in COMPONENTS:
        raise KeyError(f"unknown stand-in {name!r}; known: {', '.join(COMPONENTS)}")
    entries = {**files, "__main__.py": main_source(name, version).encode()}
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for arcname in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, entries[arcname])
    return buf.getvalue()


def write_executable(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically (a running process keeps its old file); False if unchanged."""
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(path)
    return True
