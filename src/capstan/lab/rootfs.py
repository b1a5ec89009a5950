"""A host's disk: the overlay upper layer, prepared before the host first boots.

Why prepare it from Python instead of inside the host: the identity (hostname, machine-id, SSH host
key) must be known to the lab anyway (the host key goes into the lab's known_hosts), and writing into
an unmounted upper layer is plain overlayfs usage: a file in the upper directory hides the machine's
file, a character device 0/0 ("whiteout") hides it completely, and a directory marked
``trusted.overlay.opaque`` hides the machine's directory contents (used for /root and /home, so the
machine's dotfiles and credentials do not show up in hosts). After this the host boots with only sshd
enabled: every other ``*.wants`` link and SysV start link of the machine is whited out.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capstan.errors import LabError
from capstan.lab import emulator

log = logging.getLogger(__name__)

PYTHON = "/usr/bin/python3"
EMULATOR_PYC = "/usr/lib/capstan-lab/systemctl.pyc"
_COMPILE = "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)"

KEEP_UNITS = ("ssh.service", "sshd.service")
SSHD_DROPIN = """\
# capstan lab: key-only root login, ed25519 host key only
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
"""


@dataclass(frozen=True)
class KeyPair:
    private: bytes  # OpenSSH PEM
    public: str  # "ssh-ed25519 AAAA... comment"


def new_keypair(comment: str) -> KeyPair:
    """An ed25519 key in OpenSSH formats (fast: no ssh-keygen process per host)."""
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(priv, f"{pub.decode()} {comment}")


def emulator_sources() -> tuple[Path, Path]:
    """systemctl3.py and journalctl3.py of the installed docker-systemctl-replacement package."""
    spec = importlib.util.find_spec("systemctl2.systemctl3")
    if spec is None or spec.origin is None:
        raise LabError(
            "docker-systemctl-replacement is not installed (pip install docker-systemctl-replacement)"
        )
    folder = Path(spec.origin).parent
    return folder / "systemctl3.py", folder / "journalctl3.py"


def install_emulator(dest: Path) -> None:
    """Put the emulator into ``dest``: systemctl (compiled, see below) and journalctl.

    Both run with the machine's /usr/bin/python3 because ``env python3`` inside a host could find a
    Python from the machine's PATH that is not meant to run system services. systemctl gets the
    lab's shorter start-up waits (``capstan.lab.emulator``) and is run from bytecode compiled once
    here: the emulator is one 340 KB script, and Python compiled it again on every ``systemctl``
    call, some 0.3-0.7 s each, while capstan asks a host's unit states several times per phase.
    ``systemctl`` is then a two-line launcher of ``EMULATOR_PYC``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    sctl, jctl = emulator_sources()
    text, misses = emulator.tune(sctl.read_text())
    if misses:
        log.warning("lab: systemd emulator left untuned (slower), no match for: %s", misses)
    (dest / "systemctl.py").write_text(text)
    res = subprocess.run(
        [PYTHON, "-c", _COMPILE, str(dest / "systemctl.py"), str(dest / "systemctl.pyc")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise LabError(f"cannot compile the systemd emulator with {PYTHON}: {res.stderr.strip()[-300:]}")
    (dest / "systemctl").write_text(f'#!/bin/sh\nexec {PYTHON} {EMULATOR_PYC} "$@"\n')
    lines = jctl.read_text().splitlines(keepends=True)
    if lines and lines[0].startswith("#!"):
        lines[0] = f"#!{PYTHON}\n"
    (dest / "journalctl").write_text("".join(lines))
    for name in ("systemctl", "journalctl"):
        (dest / name).chmod(0o755)


def _mkdirs_like(upper: Path, rel: str) -> Path:
    """Create ``upper/rel`` with each directory's mode and owner copied from the machine's ``/rel``.

    A merged overlay directory shows the *upper* directory's attributes, so a parent created with the
    wrong mode (say 700 for /etc) would change the host's view of the machine's directory.
    """
    path = upper
    for part in Path(rel).parts:
        path = path / part
        if path.is_dir():
            continue
        lower = Path("/") / path.relative_to(upper)
        st = os.stat(lower) if lower.is_dir() else None
        path.mkdir(mode=0o755)
        if st is not None:
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.chown(path, st.st_uid, st.st_gid)
    return path


def _write(upper: Path, rel: str, data: str | bytes, mode: int) -> None:
    parent = _mkdirs_like(upper, str(Path(rel).parent))
    target = parent / Path(rel).name
    if isinstance(data, str):
        data = data.encode()
    target.write_bytes(data)
    target.chmod(mode)


def _opaque_dir(upper: Path, rel: str, mode: int) -> Path:
    path = _mkdirs_like(upper, str(Path(rel).parent)) / Path(rel).name
    path.mkdir(mode=mode, exist_ok=True)
    path.chmod(mode)
    os.setxattr(path, "trusted.overlay.opaque", b"y")
    return path


def _whiteout(upper: Path, rel: str) -> None:
    parent = _mkdirs_like(upper, str(Path(rel).parent))
    os.mknod(parent / Path(rel).name, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def boot_links_to_hide(lower: Path = Path("/")) -> list[str]:
    """Relative paths of the machine's start links for anything but sshd (systemd wants, SysV S*)."""
    hidden = []
    for wants in sorted((lower / "etc/systemd/system").glob("*.wants")):
        for link in sorted(wants.iterdir()):
            if link.name not in KEEP_UNITS:
                hidden.append(str(link.relative_to(lower)))
    for rc in sorted(lower.glob("etc/rc[0-6S].d")):
        for link in sorted(rc.glob("S*")):
            if not link.name.endswith("ssh"):
                hidden.append(str(link.relative_to(lower)))
    return hidden


def machine_host_keys(lower: Path = Path("/")) -> list[str]:
    return [str(p.relative_to(lower)) for p in sorted((lower / "etc/ssh").glob("ssh_host_*"))]


def hosts_file(entries: Iterable[tuple[str, str]]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in entries]
    return "\n".join(lines) + "\n"


def prepare_upper(
    upper: Path,
    *,
    hostname: str,
    host_key: KeyPair,
    authorized_key: str,
    etc_hosts: str,
    emulator: Path,
) -> None:
    """Lay out a new host's upper layer: identity, sshd, the systemctl emulator, hidden start links."""
    upper.mkdir(mode=0o755, parents=True)
    root = _opaque_dir(upper, "root", 0o700)
    _opaque_dir(upper, "home", 0o755)
    shutil.copytree("/etc/skel", root, dirs_exist_ok=True)
    for rel in [*boot_links_to_hide(), *machine_host_keys()]:
        _whiteout(upper, rel)
    _write(upper, "etc/hostname", hostname + "\n", 0o644)
    _write(upper, "etc/hosts", etc_hosts, 0o644)
    _write(upper, "etc/resolv.conf", "nameserver 127.0.0.1\n", 0o644)
    _write(upper, "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    (upper / "etc/ssh/ssh_host_ed25519_key").unlink(missing_ok=True)  # a whiteout from the line above
    (upper / "etc/ssh/ssh_host_ed25519_key.pub").unlink(missing_ok=True)
    _write(upper, "etc/ssh/ssh_host_ed25519_key", host_key.private, 0o600)
    _write(upper, "etc/ssh/ssh_host_ed25519_key.pub", host_key.public + "\n", 0o644)
    _write(upper, "etc/ssh/sshd_config.d/capstan-lab.conf", SSHD_DROPIN, 0o644)
    ssh_dir = root / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write(upper, "root/.ssh/authorized_keys", authorized_key + "\n", 0o600)
    for name in ("systemctl", "journalctl"):
        _write(upper, f"usr/bin/{name}", (emulator / name).read_bytes(), 0o755)
    _write(upper, EMULATOR_PYC.lstrip("/"), (emulator / "systemctl.pyc").read_bytes(), 0o644)
    # journalctl runs "systemctl3.py log UNIT" from its own directory
    (upper / "usr/bin/systemctl3.py").symlink_to("systemctl")
