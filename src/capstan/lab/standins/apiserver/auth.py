"""Who is calling (client certificates, bootstrap tokens) and what they may do.

Authentication is the real mechanism: the TLS layer has already verified the client certificate
against --client-ca-file, so its CN is the user and its O entries the groups; a bootstrap token is
checked against its ``bootstrap-token-<id>`` Secret in kube-system with the rules kubeadm relies on
(type, usage, expiry, extra groups).

Authorization, in the real order: the superuser groups (``system:masters``; SIMPLIFICATION:
``kubeadm:cluster-admins`` too, which a real cluster grants through kubeadm's ClusterRoleBinding), then
the Node authorizer for ``system:nodes`` (with NodeRestriction's "own Node, own Lease" check, on the
name in the body for a create), then RBAC (``rbac.py``): the Roles, ClusterRoles and bindings stored
in the API, which is how bootstrap tokens get their rights (kubeadm's bindings to the default
ClusterRoles the server creates at start). SIMPLIFICATIONS: the rights of the scheduler and the
controller-manager are the fixed ``_COMPONENT_RULES`` rather than their default ClusterRoles; a node may
read any pod, Secret or ConfigMap (the Node authorizer limits reads to what its bound pods use);
non-resource paths (health, version, discovery) are open to every authenticated user.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import rbac
from .resources import Resource

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
DISCOVERY_PREFIXES = ("/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz")
SUPERUSER_GROUPS = ("system:masters", "kubeadm:cluster-admins")
_TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]

    @property
    def anonymous(self) -> bool:
        return self.name == "system:anonymous"


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def user_from_cert(peercert: dict[str, Any] | None) -> User | None:
    """CN → user, O → groups, from ``SSLSocket.getpeercert()`` of an already verified certificate."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return User(cn, (*orgs, "system:authenticated"))


def secret_value(data: dict[str, Any], key: str) -> str:
    """One decoded value of a Secret's ``data`` ("" when absent or not base64 of UTF-8)."""
    raw = data.get(key)
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def token_expired(data: dict[str, Any], now: datetime | None = None) -> bool:
    """A bootstrap-token Secret's ``expiration`` has passed (an unreadable one counts as passed)."""
    expiry = secret_value(data, "expiration")
    if not expiry:
        return False
    try:
        when = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    except ValueError:
        return True
    return when <= (now or datetime.now(UTC))


def user_from_bootstrap_token(
    token: str, secret: dict[str, Any] | None, now: datetime | None = None
) -> User | None:
    """The bootstrap-token identity if ``secret`` is a valid, unexpired Secret for ``token``."""
    m = _TOKEN_RE.match(token)
    if not m or not secret or secret.get("type") != "bootstrap.kubernetes.io/token":
        return None
    data = secret.get("data") or {}
    token_id, token_secret = m.group(1), m.group(2)
    if secret_value(data, "token-id") != token_id:
        return None
    if not hmac.compare_digest(secret_value(data, "token-secret"), token_secret):
        return None
    if secret_value(data, "usage-bootstrap-authentication") != "true" or token_expired(data, now):
        return None
    extra = [g.strip() for g in secret_value(data, "auth-extra-groups").split(",") if g.strip()]
    if any(not g.startswith("system:bootstrappers:") for g in extra):
        return None
    return User(f"system:bootstrap:{token_id}", ("system:bootstrappers", *extra, "system:authenticated"))


@dataclass(frozen=True)
class Request:
    """The attributes an authorization decision looks at."""

    user: User
    verb: str
    resource: Resource | None
    subresource: str
    namespace: str
    name: str  # from the URL (empty for create and list), what RBAC matches resourceNames against
    path: str
    object_name: str = ""  # metadata.name of the body of a create: NodeRestriction checks it


@dataclass(frozen=True)
class _Rule:
    who: frozenset[str]  # user names or groups
    verbs: frozenset[str]
    resources: frozenset[str]  # "plural" or "plural/subresource"; "*" = any
    namespaces: frozenset[str] = frozenset()  # empty = any
    own: bool = False  # the object's name must be the node's own name (system:node:<name>)


def _rule(who: str, verbs: str, resources: str, namespaces: str = "", own: bool = False) -> _Rule:
    return _Rule(
        frozenset(who.split()),
        frozenset(verbs.split()),
        frozenset(resources.split()),
        frozenset(namespaces.split()),
        own,
    )


_NODE_READS = (
    "pods services endpoints configmaps secrets serviceaccounts persistentvolumeclaims persistentvolumes"
)
_NODE_RULES: tuple[_Rule, ...] = (
    # Node authorizer + NodeRestriction (simplified: reads are not limited to bound pods). A kubelet
    # registers its own Node with its own credentials, after the TLS bootstrap: bootstrap tokens may
    # not create Nodes.
    _rule("system:nodes", "get list watch", "nodes"),
    _rule("system:nodes", "create update patch", "nodes nodes/status", own=True),
    _rule("system:nodes", "get list watch", _NODE_READS),
    _rule("system:nodes", "create delete", "pods"),
    _rule("system:nodes", "update patch", "pods/status"),
    _rule("system:nodes", "get create update patch", "leases", namespaces="kube-node-lease", own=True),
    _rule("system:nodes", "create update patch", "events"),
    _rule("system:nodes", "get list watch create update patch", "csinodes runtimeclasses"),
    _rule("system:nodes", "get list watch create", "certificatesigningrequests"),
)
_COMPONENT_RULES: tuple[_Rule, ...] = (
    # the scheduler
    _rule("system:kube-scheduler", "get list watch", "*"),
    _rule("system:kube-scheduler", "create", "pods/binding"),
    _rule("system:kube-scheduler", "update patch", "pods/status"),
    _rule("system:kube-scheduler", "get create update patch", "leases events"),
    # the controller-manager (its many controller roles, simplified to: everything)
    _rule("system:kube-controller-manager", "get list watch create update patch delete deletecollection",
          "*"),
)  # fmt: skip


def _subjects(user: User) -> set[str]:
    return {user.name, *user.groups}


def _node_name(user: User) -> str:
    return user.name.removeprefix("system:node:") if user.name.startswith("system:node:") else ""


def _allowed_by(rule: _Rule, req: Request, who: set[str]) -> bool:
    if not (rule.who & who) or req.verb not in rule.verbs or req.resource is None:
        return False
    target = req.resource.name + (f"/{req.subresource}" if req.subresource else "")
    if "*" not in rule.resources and target not in rule.resources:
        return False
    if rule.namespaces and req.namespace not in rule.namespaces:
        return False
    name = req.name or req.object_name
    return not rule.own or (bool(name) and name == _node_name(req.user))


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or any(path.startswith(p + "/") for p in ("/healthz", "/livez", "/readyz"))


def authorize(req: Request, mode: str = "Node,RBAC", rbac_source: rbac.Source | None = None) -> bool:
    """The decision for one request under --authorization-mode (see the module docstring)."""
    modes = {m.strip() for m in mode.split(",") if m.strip()}
    if "AlwaysAllow" in modes:
        return True
    if modes <= {"AlwaysDeny"}:
        return False
    who = _subjects(req.user)
    if who & set(SUPERUSER_GROUPS):
        return True
    if req.resource is None:
        if _public(req.path) or ("system:authenticated" in who and req.path.startswith(DISCOVERY_PREFIXES)):
            return True
    else:
        if "Node" in modes and any(_allowed_by(rule, req, who) for rule in _NODE_RULES):
            return True
        if "RBAC" in modes and any(_allowed_by(rule, req, who) for rule in _COMPONENT_RULES):
            return True
    if "RBAC" not in modes or rbac_source is None:
        return False
    res = req.resource
    return rbac.allows(
        rbac_source,
        req.user,
        req.verb,
        group=res.group if res is not None else "",
        resource=res.name if res is not None else "",
        subresource=req.subresource,
        namespace=req.namespace,
        name=req.name,
        path=req.path,
    )


SecretLookup = Callable[[str], dict[str, Any] | None]
