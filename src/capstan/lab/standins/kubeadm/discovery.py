"""Token discovery: how a joining node learns, and decides to trust, the cluster it joins.

As real kubeadm: fetch the ``cluster-info`` ConfigMap from kube-public without trusting the server yet,
check that it carries a JWS signature for our token id (``jws-kubeconfig-<id>``, an HS256 detached
signature keyed by the token secret), verify it, then pin the CA it contains against the
``caCertHashes`` (sha256 of the CA's SubjectPublicKeyInfo). A wrong token id, a wrong token secret and
a wrong CA hash each fail with kubeadm's message.

Who signs: the controller-manager's bootstrapsigner controller, which keeps the ``jws-kubeconfig-*``
keys in step with the bootstrap-token Secrets (kubeadm itself never signs). A join started right after
``kubeadm token create`` therefore waits, as the real one does, until the signature for its token id
appears or the discovery timeout passes. SIMPLIFICATION: a signature that is there but does not verify
fails at once (the real one retries that too until the timeout, then fails with the same message).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from capstan.lab.standins.common.jws import jws_verify
from capstan.lab.standins.kubeadm import kubeconfig, pkiutil
from capstan.lab.standins.kubeadm.base import KubeadmError
from capstan.lab.standins.kubeadm.validate import TOKEN

CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
JWS_PREFIX = "jws-kubeconfig-"
PHASE = "preflight"
log = logging.getLogger("kubeadm")


def split_token(token: str) -> tuple[str, str]:
    match = TOKEN.match(token)
    if match is None:
        raise KubeadmError(f'the bootstrap token was not of the form "{TOKEN.pattern}"', PHASE)
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class Discovered:
    server: str
    ca_pem: bytes


def check_ca_pins(ca_pem: bytes, hashes: list[str]) -> None:
    """Refuse a CA whose SubjectPublicKeyInfo hash is not among ``hashes`` (kubeadm's message)."""
    pin = pkiutil.spki_hash(pkiutil.load_cert(ca_pem))
    if pin not in [h.lower() for h in hashes]:
        raise KubeadmError(
            f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "{pin}" '
            "are pinned",
            PHASE,
        )


def discover(
    fetch: Callable[[], dict[str, Any]],
    token: str,
    hashes: list[str],
    unsafe_skip_ca: bool,
    *,
    wait_until: float = 0.0,
    interval: float = 1.0,
) -> Discovered:
    """Validate a fetched cluster-info ConfigMap against the token and the CA pins.

    While the ConfigMap carries no signature for this token id, fetch again every ``interval`` seconds
    until ``wait_until`` (a ``time.monotonic()`` deadline; 0 = look once), as kubeadm waits for the
    bootstrap signer.
    """
    token_id, token_secret = split_token(token)
    while True:
        data = fetch().get("data") or {}
        content = data.get("kubeconfig")
        if not isinstance(content, str):
            raise KubeadmError("there is no kubeconfig in the cluster-info ConfigMap", PHASE)
        signature = data.get(JWS_PREFIX + token_id)
        if isinstance(signature, str) or time.monotonic() >= wait_until:
            break
        log.info(
            "[discovery] Retrying due to error: could not find a JWS signature in the cluster-info "
            "ConfigMap for token ID %r",
            token_id,
        )
        time.sleep(interval)
    if not isinstance(signature, str):
        raise KubeadmError(
            f'there is no JWS signed token in the cluster-info ConfigMap. This token id "{token_id}" is '
            "invalid "
            'for this cluster, or it has expired. Use "kubeadm token create" on the control-plane node to '
            "create a new valid token",
            PHASE,
        )
    if not jws_verify(signature, content, token_id, token_secret):
        raise KubeadmError(
            "failed to verify JWS signature of received cluster info object, can't trust this API Server",
            PHASE,
        )
    server, ca_pem = kubeconfig.server_and_ca(content)
    if not ca_pem:
        raise KubeadmError("the cluster-info kubeconfig carries no certificate-authority-data", PHASE)
    if not unsafe_skip_ca:
        check_ca_pins(ca_pem, hashes)
    return Discovered(server, ca_pem)
