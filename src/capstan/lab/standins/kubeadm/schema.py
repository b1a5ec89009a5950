"""The shapes of kubeadm's v1beta4 documents, for the decoding checks real kubeadm makes.

Real kubeadm decodes its config strictly: a value of the wrong type (a v1beta3-style ``extraArgs`` map
where v1beta4 wants a list of ``{name, value}``) is a fatal decoding error, while an unknown field is
only a warning ("strict decoding error: unknown field"). The stand-in reproduces both, so a template
that renders the wrong shape fails here exactly as it would on a real node.
"""

from __future__ import annotations

from typing import Any

# A field's shape: a type name, a nested mapping of fields, or a one-element list [item shape].
Shape = str | dict[str, Any] | list[Any]

STR, INT, BOOL, ANY, DURATION = "str", "int", "bool", "any", "duration"
STRS = [STR]
ARGS: list[Any] = [{"name": STR, "value": STR}]
ENVS: list[Any] = [{"name": STR, "value": STR, "valueFrom": ANY}]
VOLUMES: list[Any] = [{"name": STR, "hostPath": STR, "mountPath": STR, "readOnly": BOOL, "pathType": STR}]
TIMEOUTS: dict[str, Any] = {
    k: DURATION
    for k in (
        "controlPlaneComponentHealthCheck",
        "kubeletHealthCheck",
        "kubernetesAPICall",
        "etcdAPICall",
        "tlsBootstrap",
        "discovery",
        "upgradeManifests",
    )
}
CONTROL_PLANE_COMPONENT: dict[str, Any] = {"extraArgs": ARGS, "extraVolumes": VOLUMES, "extraEnvs": ENVS}
TAINTS: list[Any] = [{"key": STR, "value": STR, "effect": STR, "timeAdded": ANY}]
NODE_REGISTRATION: dict[str, Any] = {
    "name": STR,
    "criSocket": STR,
    "taints": TAINTS,
    "kubeletExtraArgs": ARGS,
    "ignorePreflightErrors": STRS,
    "imagePullPolicy": STR,
    "imagePullSerial": BOOL,
}
API_ENDPOINT: dict[str, Any] = {"advertiseAddress": STR, "bindPort": INT}
PATCHES: dict[str, Any] = {"directory": STR}
BOOTSTRAP_TOKEN: dict[str, Any] = {
    "token": STR,
    "description": STR,
    "ttl": DURATION,
    "expires": ANY,
    "usages": STRS,
    "groups": STRS,
}
_META: dict[str, Any] = {"apiVersion": STR, "kind": STR}

CLUSTER: dict[str, Any] = {
    **_META,
    "etcd": {
        "local": {
            "imageRepository": STR,
            "imageTag": STR,
            "dataDir": STR,
            "extraArgs": ARGS,
            "extraEnvs": ENVS,
            "serverCertSANs": STRS,
            "peerCertSANs": STRS,
        },
        "external": {"endpoints": STRS, "caFile": STR, "certFile": STR, "keyFile": STR},
    },
    "networking": {"serviceSubnet": STR, "podSubnet": STR, "dnsDomain": STR},
    "kubernetesVersion": STR,
    "controlPlaneEndpoint": STR,
    "apiServer": {**CONTROL_PLANE_COMPONENT, "certSANs": STRS},
    "controllerManager": CONTROL_PLANE_COMPONENT,
    "scheduler": CONTROL_PLANE_COMPONENT,
    "dns": {"imageRepository": STR, "imageTag": STR, "disabled": BOOL},
    "proxy": {"disabled": BOOL},
    "certificatesDir": STR,
    "imageRepository": STR,
    "featureGates": {"*": BOOL},
    "clusterName": STR,
    "encryptionAlgorithm": STR,
    "certificateValidityPeriod": DURATION,
    "caCertificateValidityPeriod": DURATION,
}
INIT: dict[str, Any] = {
    **_META,
    "bootstrapTokens": [BOOTSTRAP_TOKEN],
    "dryRun": BOOL,
    "nodeRegistration": NODE_REGISTRATION,
    "localAPIEndpoint": API_ENDPOINT,
    "certificateKey": STR,
    "skipPhases": STRS,
    "patches": PATCHES,
    "timeouts": TIMEOUTS,
}
JOIN: dict[str, Any] = {
    **_META,
    "dryRun": BOOL,
    "nodeRegistration": NODE_REGISTRATION,
    "caCertPath": STR,
    "discovery": {
        "bootstrapToken": {
            "token": STR,
            "apiServerEndpoint": STR,
            "caCertHashes": STRS,
            "unsafeSkipCAVerification": BOOL,
        },
        "file": {"kubeConfigPath": STR},
        "tlsBootstrapToken": STR,
    },
    "controlPlane": {"localAPIEndpoint": API_ENDPOINT, "certificateKey": STR},
    "skipPhases": STRS,
    "patches": PATCHES,
    "timeouts": TIMEOUTS,
}
RESET: dict[str, Any] = {
    **_META,
    "cleanupTmpDir": BOOL,
    "certificatesDir": STR,
    "criSocket": STR,
    "dryRun": BOOL,
    "force": BOOL,
    "ignorePreflightErrors": STRS,
    "skipPhases": STRS,
    "unmountFlags": STRS,
    "timeouts": TIMEOUTS,
}
_UPGRADE_COMMON: dict[str, Any] = {
    "allowExperimentalUpgrades": BOOL,
    "allowRCUpgrades": BOOL,
    "certificateRenewal": BOOL,
    "dryRun": BOOL,
    "etcdUpgrade": BOOL,
    "ignorePreflightErrors": STRS,
    "imagePullPolicy": STR,
    "imagePullSerial": BOOL,
    "patches": PATCHES,
    "skipPhases": STRS,
}
UPGRADE: dict[str, Any] = {
    **_META,
    "apply": {**_UPGRADE_COMMON, "kubernetesVersion": STR, "forceUpgrade": BOOL, "printConfig": BOOL},
    "diff": {"kubernetesVersion": STR, "contextLines": INT},
    "node": _UPGRADE_COMMON,
    "plan": {"kubernetesVersion": STR, "allowExperimentalUpgrades": BOOL, "allowRCUpgrades": BOOL},
    "timeouts": TIMEOUTS,
}

KINDS: dict[str, dict[str, Any]] = {
    "InitConfiguration": INIT,
    "ClusterConfiguration": CLUSTER,
    "JoinConfiguration": JOIN,
    "ResetConfiguration": RESET,
    "UpgradeConfiguration": UPGRADE,
}

_GO_TYPES = {STR: "string", INT: "int32", BOOL: "bool", DURATION: "Duration"}


def _type_error(path: str, want: str, value: object) -> str:
    got = {dict: "object", list: "array", str: "string", bool: "bool"}.get(type(value), type(value).__name__)
    if isinstance(value, int) and not isinstance(value, bool):
        got = "number"
    return f"json: cannot unmarshal {got} into Go struct field {path} of type {want}"


def check(doc: object, shape: Shape, path: str, errors: list[str], warnings: list[str]) -> None:
    """Walk ``doc`` against ``shape``: type mismatches go to ``errors``, unknown fields to ``warnings``."""
    if doc is None or shape == ANY:
        return
    if isinstance(shape, dict):
        if not isinstance(doc, dict):
            errors.append(_type_error(path, "object", doc))
            return
        for key, value in doc.items():
            sub = shape.get(key, shape.get("*"))
            where = f"{path}.{key}" if path else str(key)
            if sub is None:
                warnings.append(f'strict decoding error: unknown field "{where}"')
            else:
                check(value, sub, where, errors, warnings)
        return
    if isinstance(shape, list):
        if not isinstance(doc, list):
            errors.append(
                _type_error(path, "[]" + ("object" if isinstance(shape[0], dict) else "string"), doc)
            )
            return
        for i, item in enumerate(doc):
            check(item, shape[0], f"{path}[{i}]", errors, warnings)
        return
    ok = {
        STR: isinstance(doc, str),
        DURATION: isinstance(doc, str),
        INT: isinstance(doc, int) and not isinstance(doc, bool),
        BOOL: isinstance(doc, bool),
    }[shape]
    if not ok:
        errors.append(_type_error(path, _GO_TYPES[shape], doc))
