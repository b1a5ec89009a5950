"""Mapping Kubespray's operational variables: etcd, upgrades, security, certificates, add-ons, artifacts.

Also the keys that need no field: Kubespray switches whose value means "off" for a feature capstan does
not have (``helm_enabled: false``) change nothing and are accepted silently; the same switch turned on is
reported. A key set to its Kubespray default that capstan shares is still "mapped", never dropped.
"""

from __future__ import annotations

from capstan.importers.kubespray.common import short
from capstan.importers.kubespray.context import Ctx

# Kubespray switches for features capstan does not have, with the value that leaves them off. The same
# value means the same cluster, so it needs no warning; any other value does.
NEUTRAL: dict[str, object] = {
    **{
        f"{name}_enabled": False
        for name in (
            "helm",
            "registry",
            "cert_manager",
            "metallb",
            "ingress_nginx",
            "ingress_alb",
            "argocd",
            "krew",
            "gateway_api",
            "node_feature_discovery",
            "local_volume_provisioner",
            "cephfs_provisioner",
            "rbd_provisioner",
            "dashboard",
            "persistent_volumes",
            "kata_containers",
            "gvisor",
            "youki",
            "crun",
            "podsecuritypolicy",
            "etcd_kubeadm",
            "typha",
            "calico_bpf",
            "calico_wireguard",
            "nvidia_accelerator",
            "scheduler_plugins",
            "kubelet_csr_approver",
            "csi_snapshot_controller",
        )
    },
    "kube_network_plugin_multus": False,
    "deploy_netchecker": False,
    "enable_dual_stack_networks": False,
    "ipv6_stack": False,
    "ipv4_stack": True,
    "enable_nodelocaldns_secondary": False,
    "enable_coredns_k8s_external": False,
    "kube_proxy_strict_arp": False,
    "kube_webhook_authorization": False,
    "kube_webhook_token_auth_url_skip_tls_verify": False,
    "drain_nodes": True,
    "drain_fallback_enabled": False,
    "upgrade_node_pause_seconds": 0,
    "upgrade_node_post_upgrade_pause_seconds": 0,
    "bin_dir": "/usr/local/bin",
    "kube_pod_security_default_enforce_version": "latest",
    "kube_pod_security_default_audit_version": "latest",
    "kube_pod_security_default_warn_version": "latest",
}

_DOWNLOAD_URL_SUFFIX = "_download_url"
_PSA_LEVELS = {"privileged": "privileged", "baseline": "baseline", "restricted": "restricted"}
_MAX_RETENTION = 10000  # the spec's upper bound for spec.etcd.backup.retention


def map_etcd(c: Ctx) -> None:
    kind = c.string("etcd_deployment_type")
    if kind not in (None, "host"):
        c.warn("etcd_deployment_type", f"{kind!r} is not supported: capstan runs etcd on hosts (systemd)")
    data_dir = c.string("etcd_data_dir")
    if data_dir is not None:
        c.put("etcd.dataDir", data_dir, "etcd_data_dir")
    for key, path in (
        ("etcd_quota_backend_bytes", "quotaBackendBytes"),
        ("etcd_snapshot_count", "snapshotCount"),
        ("etcd_heartbeat_interval", "heartbeatIntervalMs"),
        ("etcd_election_timeout", "electionTimeoutMs"),
    ):
        number = c.integer(key)
        if number is not None:
            c.put(f"etcd.{path}", number, key)
    retention = c.string("etcd_compaction_retention")
    if retention is not None:
        c.put("etcd.autoCompactionRetention", retention, "etcd_compaction_retention")
    keep = c.integer("etcd_backup_retention_count")
    if keep is not None:
        if keep < 0:
            c.warn(
                "etcd_backup_retention_count",
                f"{keep} (keep all) is not supported: capstan keeps at most {_MAX_RETENTION} snapshots",
            )
            keep = _MAX_RETENTION
        if keep == 0:
            c.warn("etcd_backup_retention_count", "0 is not supported: capstan keeps at least 1 snapshot")
            keep = 1
        c.put("etcd.backup.retention", min(keep, _MAX_RETENTION), "etcd_backup_retention_count")
    prefix = c.string("etcd_backup_prefix")
    if prefix is not None:
        c.put("etcd.backup.dir", prefix.rstrip("/") + "/etcd", "etcd_backup_prefix")


def map_upgrade(c: Ctx) -> None:
    serial = c.get("serial")
    if serial is not None:
        text = str(serial).strip()
        if (isinstance(serial, int) and not isinstance(serial, bool)) or text.isdigit():
            c.put("upgrade.workerBatch", int(text), "serial")
        elif text.endswith("%"):
            c.put("upgrade.workerBatch", text, "serial")
        else:
            raise c.error("serial", f"expected a number or a percentage such as 20%, got {short(serial)}")
    for key, path in (
        ("drain_grace_period", "gracePeriodSeconds"),
        ("drain_retries", "retries"),
        ("drain_retry_delay_seconds", "retryDelaySeconds"),
    ):
        number = c.integer(key)
        if number is not None:
            c.put(f"upgrade.drain.{path}", number, key)
    timeout = c.seconds("drain_timeout")
    if timeout is not None:
        c.put("upgrade.drain.timeoutSeconds", timeout, "drain_timeout")
    for key, path in (
        ("upgrade_node_confirm", "beforeNode"),
        ("upgrade_node_post_upgrade_confirm", "afterNode"),
    ):
        confirm = c.boolean(key)
        if confirm is not None:
            c.put(f"upgrade.pause.{path}", confirm, key)


def map_security(c: Ctx) -> None:
    enc = c.boolean("kube_encrypt_secret_data")
    if enc is None:
        c.default_differs(
            "kube_encrypt_secret_data", "false", "true", "spec.security.encryptionAtRest.enabled"
        )
    else:
        c.put("security.encryptionAtRest.enabled", enc, "kube_encrypt_secret_data")
    algo = c.choice(
        "kube_encryption_algorithm", {"secretbox": "secretbox", "aescbc": "aescbc", "aesgcm": "aesgcm"}
    )
    if algo is not None:
        c.put("security.encryptionAtRest.provider", algo, "kube_encryption_algorithm")
    resources = c.strings("kube_encryption_resources")
    if resources:
        c.put("security.encryptionAtRest.resources", resources, "kube_encryption_resources")
    audit = c.boolean("kubernetes_audit")
    if audit is None:
        c.default_differs("kubernetes_audit", "false", "true", "spec.security.audit.enabled")
    else:
        c.put("security.audit.enabled", audit, "kubernetes_audit")
    path = c.string("audit_log_path")
    if path is not None:
        c.put("security.audit.path", path, "audit_log_path")
    for key, field in (
        ("audit_log_maxage", "maxAgeDays"),
        ("audit_log_maxbackups", "maxBackups"),
        ("audit_log_maxsize", "maxSizeMb"),
    ):
        number = c.integer(key)
        if number is not None:
            c.put(f"security.audit.{field}", number, key)
    _pod_security(c)
    anonymous = c.boolean("kube_api_anonymous_auth")
    if anonymous is None:
        c.default_differs("kube_api_anonymous_auth", "true", "false", "spec.security.anonymousAuth")
    else:
        c.put("security.anonymousAuth", anonymous, "kube_api_anonymous_auth")
    modes = c.strings("authorization_modes")
    if modes is not None:
        known = ("Node", "RBAC", "Webhook", "ABAC", "AlwaysAllow")
        for mode in modes:
            if mode not in known:
                raise c.error(
                    "authorization_modes", f"{mode!r} is not supported (supported: {', '.join(known)})"
                )
        c.put("security.authorizationModes", modes, "authorization_modes")
    _oidc(c)
    if c.boolean("kube_webhook_token_auth"):
        url = c.string("kube_webhook_token_auth_url")
        c.warn(
            "kube_webhook_token_auth",
            f"not imported: capstan takes a kubeconfig-format webhook file "
            f"(spec.security.webhookTokenAuth.configFile); write one for {url or 'your webhook'} and set it",
        )


def _pod_security(c: Ctx) -> None:
    use = c.boolean("kube_pod_security_use_default")
    levels = {
        field: c.choice(f"kube_pod_security_default_{field}", _PSA_LEVELS)
        for field in ("enforce", "audit", "warn")
    }
    exempt = c.strings("kube_pod_security_exemptions_namespaces")
    if use is None:
        c.default_differs(
            "kube_pod_security_use_default",
            "false (no cluster-wide level)",
            "baseline enforced, restricted audited and warned",
            "spec.security.podSecurity",
        )
    if use is False:
        for field in levels:
            c.put(f"security.podSecurity.{field}", "privileged", "kube_pod_security_use_default")
        for field, level in levels.items():
            if level is not None:
                c.warn(
                    f"kube_pod_security_default_{field}",
                    "has no effect while kube_pod_security_use_default is false; ignored",
                )
        return
    for field, level in levels.items():
        if level is not None:
            c.put(f"security.podSecurity.{field}", level, f"kube_pod_security_default_{field}")
    if exempt is not None:
        c.put("security.podSecurity.exemptNamespaces", exempt, "kube_pod_security_exemptions_namespaces")


def _oidc(c: Ctx) -> None:
    keys = (
        "kube_oidc_url",
        "kube_oidc_client_id",
        "kube_oidc_username_claim",
        "kube_oidc_groups_claim",
        "kube_oidc_ca_file",
    )
    if not c.boolean("kube_oidc_auth"):
        for key in keys:
            if c.has(key):
                c.raw(key)
                c.warn(key, "has no effect while kube_oidc_auth is false; ignored")
        return
    url, client = c.string("kube_oidc_url"), c.string("kube_oidc_client_id")
    if not url or not client:
        raise c.error("kube_oidc_auth", "is true but kube_oidc_url or kube_oidc_client_id is not set")
    oidc = {"issuerUrl": url, "clientId": client}
    for key, field in (
        ("kube_oidc_username_claim", "usernameClaim"),
        ("kube_oidc_groups_claim", "groupsClaim"),
        ("kube_oidc_ca_file", "caFile"),
    ):
        value = c.string(key)
        if value is not None:
            oidc[field] = value
    c.put("security.oidc", oidc, "kube_oidc_url")


def map_pki(c: Ctx) -> None:
    for key, path in (
        ("kube_cert_validity_period", "leafValidityDays"),
        ("kube_ca_cert_validity_period", "caValidityDays"),
    ):
        text = c.string(key)
        if text is None:
            continue
        hours = text[:-1] if text.endswith("h") else None
        if hours is None or not hours.isdigit():
            raise c.error(key, f"expected hours such as 8760h, got {text!r}")
        days, rest = divmod(int(hours), 24)
        if rest:
            days += 1
            c.warn(key, f"{text} is not whole days; imported as {days} days")
        c.put(f"pki.{path}", days, key)
    sans = c.strings("supplementary_addresses_in_ssl_keys")
    if sans:
        c.put("pki.apiserverExtraSans", sans, "supplementary_addresses_in_ssl_keys")


def map_addons(c: Ctx) -> None:
    metrics = c.boolean("metrics_server_enabled")
    if metrics is None:
        c.default_differs("metrics_server_enabled", "false", "true", "spec.addons.metricsServer.enabled")
    else:
        c.put("addons.metricsServer.enabled", metrics, "metrics_server_enabled")
    local_path = c.boolean("local_path_provisioner_enabled")
    if local_path is not None:
        c.put("addons.localPathProvisioner.enabled", local_path, "local_path_provisioner_enabled")


def map_artifacts(c: Ctx) -> None:
    repo = c.string("files_repo")
    if repo is not None:
        c.put("artifacts.mirror", repo.rstrip("/"), "files_repo")
    once = c.boolean("download_run_once")
    if once is not None:
        c.put("artifacts.mode", "push" if once else "pull", "download_run_once")
    for key in sorted(c.vars):
        if key.endswith(_DOWNLOAD_URL_SUFFIX) and key not in c.seen:
            c.raw(key)
            c.warn(
                key,
                "not imported: capstan builds download URLs from spec.artifacts.mirror "
                "(files_repo layout, <mirror>/<original-domain>/<path>)",
            )


def map_neutral(c: Ctx) -> None:
    for key, expected in NEUTRAL.items():
        if not c.has(key) or key in c.seen:
            continue
        value = c.raw(key)
        if value is None or _same(value, expected):
            continue
        c.warn(key, f"{short(value)} is not supported by capstan; ignored")


def _same(value: object, expected: object) -> bool:
    if isinstance(expected, bool):
        text = str(value).strip().lower()
        return text in (("true", "yes", "on", "1") if expected else ("false", "no", "off", "0"))
    return str(value).strip() == str(expected)
