"""Control-plane component flags and the API server's own configuration files.

The flags are assembled here, in Python, as ordered ``name=value`` pairs (kubeadm v1beta4 takes extra
arguments as a list of ``{name, value}``) so that the spec's ``extraArgs`` can be merged last and win:
a user flag replaces ours in place, a new one is appended.

Anonymous access: the spec's default ``anonymousAuth: false`` is **not** rendered as
``--anonymous-auth=false``. kubeadm's liveness, readiness and startup probes of kube-apiserver call
``/livez``, ``/readyz`` and ``/healthz`` without credentials, so that flag makes the apiserver pod fail
its probes and restart forever (the node-local haproxy's health check would fail too). Instead the API
server gets a structured ``AuthenticationConfiguration`` (GA since Kubernetes 1.34, capstan's oldest
supported minor) that allows anonymous requests on those three paths only and refuses them everywhere
else. kube-apiserver rejects ``--oidc-*`` flags together with ``--authentication-config``, so OIDC is
expressed in the same file as a JWT authenticator; its CA must then be inline (PEM), which is why
rendering takes the CA's content when ``spec.security.oidc.caFile`` is set.

The API server pod only mounts ``/etc/kubernetes/pki`` and the system CA directories, so every other
file it reads is mounted with an ``extraVolumes`` entry of its own (read-only, ``File``); the audit log
directory is mounted writable.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from capstan.errors import RenderError
from capstan.render._checks import check_flags
from capstan.render._env import render_yaml
from capstan.render.types import RenderedFile, Secrets, text_file
from capstan.spec.models import Cluster

KUBE_DIR = "/etc/kubernetes"
PKI_DIR = f"{KUBE_DIR}/pki"
ENCRYPTION_CONFIG = f"{KUBE_DIR}/encryption-config.yaml"
AUDIT_POLICY = f"{KUBE_DIR}/audit-policy.yaml"
ADMISSION_CONFIG = f"{KUBE_DIR}/admission-config.yaml"
AUTHENTICATION_CONFIG = f"{KUBE_DIR}/authentication-config.yaml"
ANONYMOUS_PATHS = ("/livez", "/readyz", "/healthz")
TERMINATED_POD_GC_THRESHOLD = 12500  # upstream's default, written out so it shows and can be overridden


@dataclass(frozen=True)
class Arg:
    """One command-line flag, without leading dashes."""

    name: str
    value: str


@dataclass(frozen=True)
class Volume:
    """A hostPath mount into a static control-plane pod (kubeadm's ``extraVolumes``)."""

    name: str
    host_path: str
    mount_path: str
    read_only: bool
    path_type: str


def merge_args(ours: list[Arg], user: dict[str, str]) -> list[Arg]:
    """``ours`` with every user flag applied: same name replaces the value in place, new names append."""
    merged = [Arg(a.name, user.get(a.name, a.value)) for a in ours]
    known = {a.name for a in ours}
    merged += [Arg(name, value) for name, value in user.items() if name not in known]
    return merged


def feature_gates(cluster: Cluster) -> str:
    """``A=true,B=false`` (sorted), or empty when the spec sets none."""
    gates = cluster.spec.kubernetes.feature_gates
    return ",".join(f"{k}={'true' if v else 'false'}" for k, v in sorted(gates.items()))


def needs_authentication_config(cluster: Cluster) -> bool:
    sec = cluster.spec.security
    return not sec.anonymous_auth or sec.oidc is not None


def _user_args(cluster: Cluster, component: str) -> dict[str, str]:
    extra = cluster.spec.kubernetes.extra_args
    spec_name = {"controller_manager": "controllerManager"}.get(component, component)
    flags: dict[str, str] = getattr(extra, component)
    check_flags(flags, f"spec.kubernetes.extraArgs.{spec_name}")
    return flags


def apiserver_args(cluster: Cluster) -> list[Arg]:
    sec = cluster.spec.security
    args = [Arg("authorization-mode", ",".join(sec.authorization_modes))]
    if needs_authentication_config(cluster):
        args.append(Arg("authentication-config", AUTHENTICATION_CONFIG))
    if sec.webhook_token_auth is not None:
        args.append(Arg("authentication-token-webhook-config-file", sec.webhook_token_auth.config_file))
        args.append(Arg("authentication-token-webhook-cache-ttl", sec.webhook_token_auth.cache_ttl))
    args.append(Arg("enable-admission-plugins", "NodeRestriction"))
    args.append(Arg("admission-control-config-file", ADMISSION_CONFIG))
    if sec.encryption_at_rest.enabled:
        args.append(Arg("encryption-provider-config", ENCRYPTION_CONFIG))
    if sec.audit.enabled:
        audit = sec.audit
        args += [
            Arg("audit-log-path", audit.path),
            Arg("audit-log-maxage", str(audit.max_age_days)),
            Arg("audit-log-maxbackup", str(audit.max_backups)),
            Arg("audit-log-maxsize", str(audit.max_size_mb)),
            Arg("audit-policy-file", AUDIT_POLICY),
        ]
    args.append(Arg("profiling", "false"))
    if gates := feature_gates(cluster):
        args.append(Arg("feature-gates", gates))
    return merge_args(args, _user_args(cluster, "apiserver"))


def controller_manager_args(cluster: Cluster) -> list[Arg]:
    args = [
        Arg("node-cidr-mask-size", str(cluster.spec.kubernetes.node_prefix)),
        Arg("terminated-pod-gc-threshold", str(TERMINATED_POD_GC_THRESHOLD)),
        Arg("profiling", "false"),
    ]
    if gates := feature_gates(cluster):
        args.append(Arg("feature-gates", gates))
    return merge_args(args, _user_args(cluster, "controller_manager"))


def scheduler_args(cluster: Cluster) -> list[Arg]:
    args = [Arg("profiling", "false")]
    if gates := feature_gates(cluster):
        args.append(Arg("feature-gates", gates))
    return merge_args(args, _user_args(cluster, "scheduler"))


def _file_volume(name: str, path: str) -> Volume:
    return Volume(name, path, path, True, "File")


def apiserver_volumes(cluster: Cluster) -> list[Volume]:
    """Mounts for every file the apiserver flags name outside the directories kubeadm already mounts."""
    sec = cluster.spec.security
    volumes = [_file_volume("capstan-admission", ADMISSION_CONFIG)]
    if needs_authentication_config(cluster):
        volumes.append(_file_volume("capstan-authentication", AUTHENTICATION_CONFIG))
    if sec.webhook_token_auth is not None and not sec.webhook_token_auth.config_file.startswith(
        PKI_DIR + "/"
    ):
        volumes.append(_file_volume("capstan-authn-webhook", sec.webhook_token_auth.config_file))
    if sec.encryption_at_rest.enabled:
        volumes.append(_file_volume("capstan-encryption", ENCRYPTION_CONFIG))
    if sec.audit.enabled:
        volumes.append(_file_volume("capstan-audit-policy", AUDIT_POLICY))
        log_dir = posixpath.dirname(sec.audit.path)
        volumes.append(Volume("capstan-audit-log", log_dir, log_dir, False, "DirectoryOrCreate"))
    return volumes


def _oidc_username_prefix(issuer_url: str, claim: str) -> str:
    # The --oidc-* flags' default, kept so user names do not change when moving to the config file:
    # claims other than "email" are prefixed with the issuer URL and "#".
    return "" if claim == "email" else f"{issuer_url}#"


def _authentication_config(cluster: Cluster, oidc_ca_pem: str | None) -> RenderedFile:
    sec = cluster.spec.security
    oidc = sec.oidc
    if oidc is not None and oidc.ca_file and not oidc_ca_pem:
        raise RenderError(
            "spec.security.oidc.caFile: the apiserver's authentication config embeds the OIDC CA; "
            "pass its PEM content to rendering (oidc_ca_pem)"
        )
    text = render_yaml(
        "apiserver/authentication-config.yaml.j2",
        anonymous_paths=[] if sec.anonymous_auth else list(ANONYMOUS_PATHS),
        oidc=oidc,
        oidc_ca_pem=oidc_ca_pem if oidc is not None and oidc.ca_file else None,
        username_prefix=_oidc_username_prefix(oidc.issuer_url, oidc.username_claim) if oidc else "",
    )
    return text_file(AUTHENTICATION_CONFIG, text)


def control_plane_config_files(
    cluster: Cluster, secrets: Secrets, oidc_ca_pem: str | None = None
) -> list[RenderedFile]:
    """Admission, authentication, encryption and audit files the apiserver flags point at."""
    sec = cluster.spec.security
    files = [
        text_file(ADMISSION_CONFIG, render_yaml("apiserver/admission-config.yaml.j2", pss=sec.pod_security))
    ]
    if needs_authentication_config(cluster):
        files.append(_authentication_config(cluster, oidc_ca_pem))
    if sec.encryption_at_rest.enabled:
        enc = sec.encryption_at_rest
        text = render_yaml(
            "apiserver/encryption-config.yaml.j2",
            resources=enc.resources,
            provider=enc.provider,
            key=secrets.encryption_key_b64,
        )
        files.append(text_file(ENCRYPTION_CONFIG, text, secret=True))
    if sec.audit.enabled:
        files.append(text_file(AUDIT_POLICY, render_yaml("apiserver/audit-policy.yaml.j2")))
    return files
