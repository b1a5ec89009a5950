"""Field validation of kubeadm configs, with real kubeadm's ``<field>: Invalid value: ...`` wording.

All problems of one document are reported together (kubeadm aggregates them), so a template with two
mistakes shows both at once.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from capstan.lab.standins.kubeadm.base import KubeadmError, Version

TOKEN = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
TOKEN_GROUP = re.compile(r"\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\Z")
CA_HASH = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
CERT_KEY = re.compile(r"\A[0-9a-f]{64}\Z")
DNS1123 = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
DURATION = re.compile(r"\A(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+\Z")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ENCRYPTION = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")
USAGES = ("signing", "authentication")

Doc = dict[str, Any]


def _invalid(errs: list[str], where: str, value: object, why: str) -> None:
    errs.append(f'{where}: Invalid value: "{value}": {why}')


def _required(errs: list[str], where: str, why: str = "") -> None:
    errs.append(f"{where}: Required value{': ' + why if why else ''}")


def _cidr(errs: list[str], where: str, value: object) -> None:
    for part in str(value).split(","):
        try:
            ipaddress.ip_network(part.strip(), strict=True)
        except ValueError:
            _invalid(errs, where, value, "couldn't parse subnet")


def _endpoint(errs: list[str], where: str, value: object) -> None:
    try:
        parts = urlsplit("//" + str(value))
        host, _ = parts.hostname, parts.port
    except ValueError:
        _invalid(errs, where, value, "port must be a valid number between 1 and 65535, inclusive")
        return
    if not host or (not DNS1123.match(host) and not _is_ip(host)):
        _invalid(errs, where, value, "not a valid host[:port]")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _api_endpoint(errs: list[str], where: str, ep: Doc) -> None:
    addr = ep.get("advertiseAddress")
    if addr and not _is_ip(str(addr)):
        _invalid(errs, f"{where}.advertiseAddress", addr, "couldn't use as value for the advertise address")
    port = ep.get("bindPort")
    if port is not None and not 0 < int(port) < 65536:
        _invalid(errs, f"{where}.bindPort", port, "port number must be between 1 and 65535, inclusive")


def _node_registration(errs: list[str], nreg: Doc) -> None:
    name = nreg.get("name")
    if name is not None and (not DNS1123.match(str(name)) or len(str(name)) > 253):
        _invalid(
            errs,
            "nodeRegistration.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower "
            "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character",
        )
    cri = nreg.get("criSocket")
    if cri and urlsplit(str(cri)).scheme not in ("unix", "npipe"):
        _invalid(errs, "nodeRegistration.criSocket", cri, "CRI socket path must be a URL with scheme unix://")
    for i, taint in enumerate(nreg.get("taints") or []):
        if not taint.get("key"):
            _required(errs, f"nodeRegistration.taints[{i}].key")
        if taint.get("effect") not in TAINT_EFFECTS:
            errs.append(
                f'nodeRegistration.taints[{i}].effect: Unsupported value: "{taint.get("effect")}": '
                f"supported values: {', '.join(repr(e) for e in TAINT_EFFECTS)}"
            )
    _args(errs, "nodeRegistration.kubeletExtraArgs", nreg)


def _args(errs: list[str], where: str, holder: Doc, key: str = "kubeletExtraArgs") -> None:
    for i, arg in enumerate(holder.get(key) or []):
        if not arg.get("name"):
            _required(errs, f"{where}[{i}].name")


def _tokens(errs: list[str], tokens: list[Doc]) -> None:
    for i, tok in enumerate(tokens):
        where = f"bootstrapTokens[{i}]"
        if "token" in tok and not TOKEN.match(str(tok["token"])):
            _invalid(
                errs,
                f"{where}.token",
                "<redacted>",
                f'the bootstrap token was not of the form "{TOKEN.pattern}"',
            )
        if tok.get("ttl") and not DURATION.match(str(tok["ttl"])):
            _invalid(errs, f"{where}.ttl", tok["ttl"], "invalid duration")
        for usage in tok.get("usages") or []:
            if usage not in USAGES:
                _invalid(errs, f"{where}.usages", usage, f"usages must be among {', '.join(USAGES)}")
        for group in tok.get("groups") or []:
            if not TOKEN_GROUP.match(str(group)):
                _invalid(errs, f"{where}.groups", group, f"bootstrap group must match {TOKEN_GROUP.pattern}")


def _etcd(errs: list[str], etcd: Doc) -> None:
    local, external = etcd.get("local"), etcd.get("external")
    if local is not None and external is not None:
        errs.append('etcd: Invalid value: "": either etcd.local or etcd.external can be set, not both')
    if external is None:
        # A stand-in limit, not kubeadm's: there is no etcd image to run, so etcd must be external.
        errs.append(
            "etcd.local: Unsupported value: the lab stand-in runs no etcd static pod; set etcd.external"
        )
        return
    endpoints = external.get("endpoints") or []
    if not endpoints:
        _required(errs, "etcd.external.endpoints", "empty endpoints list")
    for i, ep in enumerate(endpoints):
        parts = urlsplit(str(ep))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            _invalid(errs, f"etcd.external.endpoints[{i}]", ep, "URL parse error")
    if any(str(ep).startswith("https") for ep in endpoints):
        for key in ("caFile", "certFile", "keyFile"):
            if not external.get(key):
                _invalid(
                    errs,
                    f"etcd.external.{key}",
                    "",
                    "caFile, certFile and keyFile must be set for https endpoints",
                )


def _component_args(errs: list[str], cluster: Doc) -> None:
    for comp in ("apiServer", "controllerManager", "scheduler"):
        _args(errs, f"{comp}.extraArgs", cluster.get(comp) or {}, "extraArgs")


def cluster_errors(cluster: Doc, require_version: bool = True) -> list[str]:
    errs: list[str] = []
    version = cluster.get("kubernetesVersion")
    if not version:
        if require_version:
            _required(errs, "kubernetesVersion", "the lab stand-in does not fetch stable-1 from the Internet")
    else:
        try:
            Version.parse(str(version), "kubernetesVersion")
        except KubeadmError as exc:
            errs.append(exc.reason)
    net = cluster.get("networking") or {}
    for key in ("serviceSubnet", "podSubnet"):
        if net.get(key):
            _cidr(errs, f"networking.{key}", net[key])
    if net.get("dnsDomain") and not DNS1123.match(str(net["dnsDomain"])):
        _invalid(errs, "networking.dnsDomain", net["dnsDomain"], "a lowercase RFC 1123 subdomain")
    if cluster.get("controlPlaneEndpoint"):
        _endpoint(errs, "controlPlaneEndpoint", cluster["controlPlaneEndpoint"])
    for i, san in enumerate((cluster.get("apiServer") or {}).get("certSANs") or []):
        if not _is_ip(str(san)) and not DNS1123.match(str(san).lower().removeprefix("*.")):
            _invalid(errs, f"apiServer.certSANs[{i}]", san, "altname is not a valid IP address or DNS label")
    _etcd(errs, cluster.get("etcd") or {})
    _component_args(errs, cluster)
    alg = cluster.get("encryptionAlgorithm")
    if alg and alg not in ENCRYPTION:
        errs.append(
            f'encryptionAlgorithm: Unsupported value: "{alg}": supported values: {", ".join(ENCRYPTION)}'
        )
    for key in ("certificateValidityPeriod", "caCertificateValidityPeriod"):
        if cluster.get(key) and not DURATION.match(str(cluster[key])):
            _invalid(errs, key, cluster[key], "invalid duration")
    return errs


def init_errors(init: Doc) -> list[str]:
    errs: list[str] = []
    _api_endpoint(errs, "localAPIEndpoint", init.get("localAPIEndpoint") or {})
    _node_registration(errs, init.get("nodeRegistration") or {})
    _tokens(errs, init.get("bootstrapTokens") or [])
    key = init.get("certificateKey")
    if key and not CERT_KEY.match(str(key)):
        _invalid(
            errs,
            "certificateKey",
            "<redacted>",
            "certificate key must be 64 hexadecimal characters (32 bytes)",
        )
    return errs


def join_errors(join: Doc) -> list[str]:
    errs: list[str] = []
    _node_registration(errs, join.get("nodeRegistration") or {})
    disc = join.get("discovery") or {}
    token, file = disc.get("bootstrapToken"), disc.get("file")
    if token is None and file is None:
        _invalid(errs, "discovery", "", "bootstrapToken or file must be set")
    if token is not None and file is not None:
        _invalid(errs, "discovery", "", "bootstrapToken and file cannot both be set")
    if file is not None:
        errs.append("discovery.file: Unsupported value: the lab stand-in supports token discovery only")
    if token is not None:
        if not TOKEN.match(str(token.get("token", ""))):
            _invalid(
                errs,
                "discovery.bootstrapToken.token",
                "<redacted>",
                f'the bootstrap token was not of the form "{TOKEN.pattern}"',
            )
        if not token.get("apiServerEndpoint"):
            _required(errs, "discovery.bootstrapToken.apiServerEndpoint")
        else:
            _endpoint(errs, "discovery.bootstrapToken.apiServerEndpoint", token["apiServerEndpoint"])
        hashes = token.get("caCertHashes") or []
        if not hashes and not token.get("unsafeSkipCAVerification"):
            _invalid(
                errs,
                "discovery.bootstrapToken.caCertHashes",
                "",
                "using token-based discovery "
                "without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your "
                "kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to "
                "continue",
            )
        for i, h in enumerate(hashes):
            if not CA_HASH.match(str(h)):
                _invalid(
                    errs,
                    f"discovery.bootstrapToken.caCertHashes[{i}]",
                    h,
                    'hash must be of the form "sha256:<64 lowercase hex digits>"',
                )
    cp = join.get("controlPlane")
    if cp:
        _api_endpoint(errs, "controlPlane.localAPIEndpoint", cp.get("localAPIEndpoint") or {})
        key = cp.get("certificateKey")
        if key and not CERT_KEY.match(str(key)):
            _invalid(
                errs,
                "controlPlane.certificateKey",
                "<redacted>",
                "certificate key must be 64 hexadecimal characters (32 bytes)",
            )
    return errs


def raise_if(errs: list[str], phase: str = "") -> None:
    if errs:
        raise KubeadmError("[" + ", ".join(errs) + "]" if len(errs) > 1 else errs[0], phase)
