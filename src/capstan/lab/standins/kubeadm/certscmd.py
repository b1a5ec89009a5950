"""``kubeadm certs check-expiration`` and ``kubeadm certs renew all|<name>``.

Renewal re-issues a certificate with the same subject, SANs and usages, a fresh key and a new validity
from its CA (the CA key must be on the node); kubeconfigs get their embedded credentials replaced.
With external etcd, kubeadm manages no etcd certificate, so none is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from capstan.lab.standins.kubeadm import kubeconfig, pkiutil
from capstan.lab.standins.kubeadm.base import (
    ADMIN_CONF,
    CONTROLLER_MANAGER_CONF,
    PKI_DIR,
    SCHEDULER_CONF,
    SUPER_ADMIN_CONF,
    KubeadmError,
    path,
    say,
    write_file,
)


@dataclass(frozen=True)
class Renewable:
    name: str
    file: str  # a .crt (with its .key next to it) or a kubeconfig
    ca: str
    is_kubeconfig: bool


def renewables(pki_dir: str = PKI_DIR) -> list[Renewable]:
    return [
        Renewable("admin.conf", ADMIN_CONF, "ca", True),
        Renewable("apiserver", f"{pki_dir}/apiserver.crt", "ca", False),
        Renewable("apiserver-kubelet-client", f"{pki_dir}/apiserver-kubelet-client.crt", "ca", False),
        Renewable("controller-manager.conf", CONTROLLER_MANAGER_CONF, "ca", True),
        Renewable("front-proxy-client", f"{pki_dir}/front-proxy-client.crt", "front-proxy-ca", False),
        Renewable("scheduler.conf", SCHEDULER_CONF, "ca", True),
        Renewable("super-admin.conf", SUPER_ADMIN_CONF, "ca", True),
    ]


def _cert_pem(item: Renewable) -> bytes | None:
    target = path(item.file)
    if not target.exists():
        return None
    data = target.read_bytes()
    return kubeconfig.client_cert_pem(data) if item.is_kubeconfig else data


def _residual(when: datetime, now: datetime) -> str:
    seconds = (when - now).total_seconds()
    if seconds <= 0:
        return "<invalid>"
    days = int(seconds // 86400)
    if days >= 365:
        return f"{days // 365}y"
    return f"{days}d" if days else f"{int(seconds // 3600)}h"


def _stamp(when: datetime) -> str:
    return when.strftime("%b %d, %Y %H:%M UTC")


def check_expiration(pki_dir: str = PKI_DIR) -> int:
    now = datetime.now(UTC)
    say(
        f"{'CERTIFICATE':<26}{'EXPIRES':<25}{'RESIDUAL TIME':<16}"
        f"{'CERTIFICATE AUTHORITY':<24}EXTERNALLY MANAGED"
    )
    for item in renewables(pki_dir):
        pem = _cert_pem(item)
        if pem is None:
            say(f"!MISSING! {item.name}")
            continue
        expires = pkiutil.not_after(pkiutil.load_cert(pem))
        external = "no" if path(f"{pki_dir}/{item.ca}.key").exists() else "yes"
        say(f"{item.name:<26}{_stamp(expires):<25}{_residual(expires, now):<16}{item.ca:<24}{external}")
    say(f"\n{'CERTIFICATE AUTHORITY':<24}{'EXPIRES':<25}{'RESIDUAL TIME':<16}EXTERNALLY MANAGED")
    for ca in ("ca", "front-proxy-ca"):
        crt = path(f"{pki_dir}/{ca}.crt")
        if not crt.exists():
            say(f"!MISSING! {ca}")
            continue
        expires = pkiutil.not_after(pkiutil.load_cert(crt.read_bytes()))
        external = "no" if path(f"{pki_dir}/{ca}.key").exists() else "yes"
        say(f"{ca:<24}{_stamp(expires):<25}{_residual(expires, now):<16}{external}")
    return 0


def renew(which: str, pki_dir: str = PKI_DIR, days: int = 365) -> int:
    items = renewables(pki_dir)
    if which != "all":
        items = [i for i in items if i.name == which]
        if not items:
            names = ", ".join(i.name for i in renewables(pki_dir))
            raise KubeadmError(f'unknown certificate "{which}"; renewable: all, {names}')
    for item in items:
        pem = _cert_pem(item)
        if pem is None:
            say(f"MISSING! {item.name}: the file {item.file} does not exist, skipping")
            continue
        ca_crt, ca_key = path(f"{pki_dir}/{item.ca}.crt"), path(f"{pki_dir}/{item.ca}.key")
        if not ca_key.exists():
            raise KubeadmError(
                f"certificate {item.name} is signed by an external CA ({ca_key} is missing); "
                "renew it with that CA"
            )
        ca = pkiutil.Issued(pkiutil.load_cert(ca_crt.read_bytes()), pkiutil.load_key(ca_key.read_bytes()))
        old = pkiutil.load_cert(pem)
        algorithm = "ECDSA-P256" if isinstance(old.public_key(), ec.EllipticCurvePublicKey) else "RSA-2048"
        fresh = pkiutil.reissue(ca, old, algorithm, days)
        if item.is_kubeconfig:
            text = kubeconfig.replace_credentials(
                path(item.file).read_bytes(), fresh.cert_pem(), fresh.key_pem()
            )
            write_file(item.file, text, 0o600)
            say(
                f"certificate embedded in the kubeconfig file for the {item.name.removesuffix('.conf')} "
                "to use "
                "renewed"
            )
        else:
            write_file(item.file, fresh.cert_pem())
            write_file(item.file.removesuffix(".crt") + ".key", fresh.key_pem(), 0o600)
            say(f"certificate for {item.name} renewed")
    if which == "all":
        say(
            "\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, "
            "kube-scheduler and etcd, so that they can use the new certificates."
        )
    return 0
