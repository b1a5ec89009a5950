"""Who is calling (client certificates, bootstrap tokens) and what they may do.

Authentication is the real mechanism: the TLS layer has already verified the client certificate
against --client-ca-file, so its CN is the user and its O entries the groups; a bootstrap token is
checked against its ``bootstrap-token-<id>`` Secret in kube-system with the rules kubeadm relies on
(type, usage, expiry, extra groups).

Authorization is a SIMPLIFICATION of Node+RBAC: instead of evaluating RBAC objects it applies the
fixed policy in ``_RULES`` below, which grants what the default roles and kubeadm's bindings grant
the identities a kubeadm cluster uses (admins, nodes, bootstrappers, controller-manager, scheduler),
and denies everything else. RoleBindings created through the API are stored but not consulted.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


def _decoded(data: dict[str, Any], key: str) -> str:
    raw = data.get(key)
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def user_from_bootstrap_token(
    token: str, secret: dict[str, Any] | None, now: datetime | None = None
) -> User | None:
    """The bootstrap-token identity if ``secret`` is a valid, unexpired Secret for ``token``."""
    m = _TOKEN_RE.match(token)
    if not m or not secret or secret.get("type") != "bootstrap.kubernetes.io/token":
        return None
    data = secret.get("data") or {}
    token_id, token_secret = m.group(1), m.group(2)
    if _decoded(data, "token-id") != token_id:
        return None
    if not hmac.compare_digest(_decoded(data, "token-secret"), token_secret):
        return None
    if _decoded(data, "usage-bootstrap-authentication") != "true":
        return None
    expiry = _decoded(data, "expiration")
    if expiry:
        try:
            when = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when <= (now or datetime.now(UTC)):
            return None
    extra = [g.strip() for g in _decoded(data, "auth-extra-groups").split(",") if g.strip()]
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
    name: str
    path: str


_READ = frozenset({"get", "list", "watch"})
_WRITE = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True)
class _Rule:
    who: frozenset[str]  # user names or groups
    verbs: frozenset[str]
    resources: frozenset[str]  # "plural" or "plural/subresource"; "*" = any
    namespaces: frozenset[str] = frozenset()  # empty = any
    names: frozenset[str] = frozenset()  # empty = any
    own: bool = False  # the object's name must be the node's own name (system:node:<name>)


def _rule(
    who: str, verbs: str, resources: str, namespaces: str = "", names: str = "", own: bool = False
) -> _Rule:
    return _Rule(
        frozenset(who.split()),
        frozenset(verbs.split()),
        frozenset(resources.split()),
        frozenset(namespaces.split()),
        frozenset(names.split()),
        own,
    )


_NODE_READS = (
    "pods services endpoints configmaps secrets serviceaccounts persistentvolumeclaims persistentvolumes"
)
_RULES: tuple[_Rule, ...] = (
    # kubelets (Node authorizer + system:node role, simplified: reads are not limited to bound pods)
    _rule("system:nodes", "get list watch create", "nodes"),
    _rule("system:nodes", "update patch", "nodes nodes/status", own=True),
    _rule("system:nodes", "get list watch", _NODE_READS),
    _rule("system:nodes", "create delete", "pods"),
    _rule("system:nodes", "update patch", "pods/status"),
    _rule("system:nodes", "get create update patch", "leases", namespaces="kube-node-lease", own=True),
    _rule("system:nodes", "create update patch", "events"),
    _rule("system:nodes", "get list watch create update patch", "csinodes runtimeclasses"),
    _rule("system:nodes", "get list watch create", "certificatesigningrequests"),
    # bootstrap tokens (system:node-bootstrapper, kubeadm:get-nodes, kubeadm's config Roles);
    # creating a Node with a bootstrap token is ALLOWED here, which the real cluster refuses
    _rule("system:bootstrappers", "get list watch create", "certificatesigningrequests"),
    _rule("system:bootstrappers", "get create", "nodes"),
    _rule(
        "system:bootstrappers system:nodes", "get", "configmaps",
        namespaces="kube-system", names="kubeadm-config kubelet-config kube-proxy",
    ),
    _rule(
        "system:authenticated system:unauthenticated", "get", "configmaps",
        namespaces="kube-public", names="cluster-info",
    ),
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
    if rule.names and req.name not in rule.names:
        return False
    return not rule.own or (bool(req.name) and req.name == _node_name(req.user))


def authorize(req: Request, mode: str = "Node,RBAC") -> bool:
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
        if req.path in PUBLIC_PATHS or any(
            req.path.startswith(p + "/") for p in ("/healthz", "/livez", "/readyz")
        ):
            return True
        return "system:authenticated" in who and req.path.startswith(DISCOVERY_PREFIXES)
    return any(_allowed_by(rule, req, who) for rule in _RULES)


SecretLookup = Callable[[str], dict[str, Any] | None]
