"""Where each piece of PKI material lives on a host, and which hosts get it.

One table serves both directions: ``files_for_host`` writes from it and ``generate`` reads existing
files back through it, so a file capstan writes is always a file it recognises on the next run.

Kubernetes material follows kubeadm's layout under ``/etc/kubernetes/pki`` so that ``kubeadm init``/
``join`` find every certificate already present and skip generating their own. etcd runs outside
kubeadm (systemd), so its material lives under ``/etc/ssl/etcd``.

Who gets what (least privilege, but no less than the components need):

- every Kubernetes node (control-plane or worker): the cluster CA certificate and its own kubelet.conf.
  etcd-only hosts run no kubelet and get neither.
- control-plane nodes: the three CA keys, the service-account key pair and their own serving and client
  certificates. The etcd CA key is kept at kubeadm's ``pki/etcd/ca.key`` on every control plane only so
  that the next run can reuse the CA (``generate`` reads CAs from the first control plane); nothing on the
  host uses it.
- etcd members: the etcd CA certificate and their own member, peer and etcdctl certificates.
- nodes named in ``etcd_clients``: the etcd CA certificate and their own etcd client certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from capstan.pki.inputs import PKIInputs
from capstan.pki.specs import CA_ETCD, CA_FRONT_PROXY, CA_KUBERNETES, SERVICE_ACCOUNT, leaf_name

KUBE_DIR = "/etc/kubernetes"
PKI_DIR = f"{KUBE_DIR}/pki"
ETCD_DIR = "/etc/ssl/etcd"

Part = Literal["cert", "key", "kubeconfig", "sa-key", "sa-pub"]
SECRET_PARTS: frozenset[Part] = frozenset({"key", "kubeconfig", "sa-key"})

# Where each CA is read from on the first control plane and written to on every control plane.
CA_FILES: dict[str, tuple[str, str]] = {
    CA_KUBERNETES: (f"{PKI_DIR}/ca.crt", f"{PKI_DIR}/ca.key"),
    CA_FRONT_PROXY: (f"{PKI_DIR}/front-proxy-ca.crt", f"{PKI_DIR}/front-proxy-ca.key"),
    CA_ETCD: (f"{PKI_DIR}/etcd/ca.crt", f"{PKI_DIR}/etcd/ca.key"),
}
SA_FILES = (f"{PKI_DIR}/sa.key", f"{PKI_DIR}/sa.pub")


@dataclass(frozen=True)
class FileSlot:
    """One file on one host: its path, the logical name it comes from, and which part of it."""

    path: str
    name: str
    part: Part


@dataclass(frozen=True)
class HostFile:
    """The bytes of one file and how to install it. ``content`` stays out of ``repr`` (secrets, logs)."""

    content: bytes = field(repr=False)
    mode: int
    secret: bool


def _pair(base: str, name: str) -> list[FileSlot]:
    return [FileSlot(f"{base}.crt", name, "cert"), FileSlot(f"{base}.key", name, "key")]


def _control_plane_slots(node: str) -> list[FileSlot]:
    slots = [
        FileSlot(CA_FILES[CA_KUBERNETES][1], CA_KUBERNETES, "key"),
        *_pair(f"{PKI_DIR}/apiserver", leaf_name("kubernetes/apiserver", node)),
        *_pair(f"{PKI_DIR}/apiserver-kubelet-client", leaf_name("kubernetes/apiserver-kubelet-client", node)),
        *_pair(f"{PKI_DIR}/front-proxy-ca", CA_FRONT_PROXY),
        *_pair(f"{PKI_DIR}/front-proxy-client", leaf_name("kubernetes/front-proxy-client", node)),
        FileSlot(SA_FILES[0], SERVICE_ACCOUNT, "sa-key"),
        FileSlot(SA_FILES[1], SERVICE_ACCOUNT, "sa-pub"),
        *_pair(f"{PKI_DIR}/apiserver-etcd-client", leaf_name("kubernetes/apiserver-etcd-client", node)),
        *_pair(f"{PKI_DIR}/etcd/ca", CA_ETCD),
    ]
    for kind in ("admin", "super-admin", "controller-manager", "scheduler"):
        slots.append(FileSlot(f"{KUBE_DIR}/{kind}.conf", leaf_name(f"kubeconfig/{kind}", node), "kubeconfig"))
    return slots


def host_slots(inputs: PKIInputs, node_name: str) -> list[FileSlot]:
    """Every file ``node_name`` receives, in a stable order; a path appears once."""
    node = inputs.node(node_name)
    slots: list[FileSlot] = []
    if node.is_kube_node:
        slots.append(FileSlot(CA_FILES[CA_KUBERNETES][0], CA_KUBERNETES, "cert"))
        slots.append(
            FileSlot(f"{KUBE_DIR}/kubelet.conf", leaf_name("kubeconfig/kubelet", node.name), "kubeconfig")
        )
    if node.is_control_plane:
        slots.extend(_control_plane_slots(node.name))
    if node.is_etcd or node.name in inputs.etcd_clients:
        slots.append(FileSlot(f"{ETCD_DIR}/ca.crt", CA_ETCD, "cert"))
    if node.is_etcd:
        slots.extend(_pair(f"{ETCD_DIR}/member", leaf_name("etcd/member", node.name)))
        slots.extend(_pair(f"{ETCD_DIR}/peer", leaf_name("etcd/peer", node.name)))
        slots.extend(_pair(f"{ETCD_DIR}/etcdctl", leaf_name("etcd/etcdctl", node.name)))
    if node.name in inputs.etcd_clients:
        slots.extend(_pair(f"{ETCD_DIR}/client", leaf_name("etcd/client", node.name)))
    return list({slot.path: slot for slot in slots}.values())


def file_mode(part: Part) -> int:
    return 0o600 if part in SECRET_PARTS else 0o644
