"""One API request, from path and credentials to a JSON answer: authenticate, route, authorize, act.

Why independent of http.server: the TLS server (``server.py``) only turns sockets into
``HttpRequest`` values, so the semantics here are the same whether reached by kubectl over TLS or
by a unit test. Anonymous callers may reach the public health/version paths and what RBAC grants
``system:anonymous`` (kubeadm's Role for the cluster-info ConfigMap); anything else answers 401
(SIMPLIFICATION: with --anonymous-auth=true a real server answers 403 for system:anonymous).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import auth, discovery, eviction, protobuf, rbac, status
from .audit import AuditLog
from .registry import Obj, Registry
from .resources import Resource, by_name, core
from .selectors import field_query, label_query
from .status import ApiStatus
from .storage import StorageError, Unavailable
from .tables import table

log = logging.getLogger("kube-apiserver")


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    peercert: dict[str, Any] | None = None
    remote: str = ""


@dataclass
class HttpResponse:
    code: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    resource: Resource | None
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def _json(code: int, obj: Any) -> HttpResponse:
    return HttpResponse(code, json.dumps(obj).encode())


class _RbacObjects:
    """The stored RBAC objects, as ``rbac.allows`` reads them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def list(self, plural: str, namespace: str) -> list[Obj]:
        return self.registry.items(by_name(rbac.GROUP, plural), namespace)[0]

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        try:
            return self.registry.get(by_name(rbac.GROUP, plural), namespace, name)
        except ApiStatus:
            return None


class App:
    def __init__(
        self,
        registry: Registry,
        *,
        version: str,
        address: str = "127.0.0.1:6443",
        authorization_mode: str = "Node,RBAC",
        anonymous_auth: bool = True,
        bootstrap_tokens: bool = False,
        audit: AuditLog | None = None,
    ) -> None:
        self.registry = registry
        self.version = version
        self.address = address
        self.authorization_mode = authorization_mode
        self.anonymous_auth = anonymous_auth
        self.bootstrap_tokens = bootstrap_tokens
        self.audit = audit
        self.rbac = _RbacObjects(registry)

    # ---- entry -------------------------------------------------------------------------------
    def handle(self, req: HttpRequest) -> HttpResponse:
        user: auth.User | None = None
        verb, route = req.method.lower(), Route(None)
        try:
            user = self._authenticate(req)
            route = self._route(req.path)
            verb = self._verb(req, route)
            attrs = auth.Request(
                user,
                verb,
                route.resource,
                route.subresource,
                route.namespace,
                route.name,
                req.path,
                self._object_name(req) if verb == "create" and not route.name else "",
            )
            if not auth.authorize(attrs, self.authorization_mode, self.rbac):
                if user.anonymous:
                    raise status.unauthorized()
                raise status.forbidden(user.name, verb, route.resource, route.namespace, req.path)
            resp = self._dispatch(req, route, verb, user)
        except ApiStatus as exc:
            resp = _json(exc.code, exc.body())
        except Unavailable as exc:
            resp = _json(503, status.unavailable(f"etcd is unavailable: {exc}").body())
        except (StorageError, ValueError) as exc:
            log.exception("storage failure on %s %s", req.method, req.path)
            resp = _json(500, ApiStatus(500, "InternalError", f"Internal error occurred: {exc}").body())
        if self.audit is not None and route.resource is not None:
            ref = {"resource": route.resource.name, "namespace": route.namespace, "name": route.name}
            ref["apiGroup"], ref["apiVersion"] = route.resource.group, route.resource.version
            self.audit.record(
                user=user, verb=verb, uri=req.path, code=resp.code, remote=req.remote, object_ref=ref
            )
        return resp

    def _authenticate(self, req: HttpRequest) -> auth.User:
        user = auth.user_from_cert(req.peercert)
        if user is not None:
            return user
        header = req.headers.get("authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :].strip()
            found = self._bootstrap_user(token) if self.bootstrap_tokens else None
            if found is None:
                raise status.unauthorized()
            return found
        if header:
            raise status.unauthorized()
        if not self.anonymous_auth:
            raise status.unauthorized()
        return auth.ANONYMOUS

    def _bootstrap_user(self, token: str) -> auth.User | None:
        token_id = token.split(".", 1)[0]
        try:
            secret: Obj | None = self.registry.get(
                core("secrets"), "kube-system", f"bootstrap-token-{token_id}"
            )
        except ApiStatus:
            secret = None
        return auth.user_from_bootstrap_token(token, secret)

    def _object_name(self, req: HttpRequest) -> str:
        """metadata.name of a create's body, for NodeRestriction ("" when the body does not decode)."""
        try:
            body = self._body(req)
        except ApiStatus:
            return ""
        meta = body.get("metadata") if isinstance(body, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        return name if isinstance(name, str) else ""

    # ---- routing -----------------------------------------------------------------------------
    def _route(self, path: str) -> Route:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"] and len(parts) > 2:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return Route(None)
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        res = self.registry.resolve(group, version, rest[0])
        if res is None or len(rest) > 3 or (namespace and not res.namespaced):
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if (sub and sub not in res.subresources) or (res.namespaced and name and not namespace):
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        return Route(res, namespace, name, sub)

    def _verb(self, req: HttpRequest, route: Route) -> str:
        m = req.method
        if route.resource is None:
            return m.lower()
        if m == "GET":
            if req.query.get("watch") in ("true", "1"):
                raise status.method_not_allowed("watch is not supported by the lab's kube-apiserver stand-in")
            return "get" if route.name else "list"
        if m == "POST" and (not route.name or route.subresource in ("eviction", "binding")):
            return "create"
        if m in ("PUT", "PATCH") and route.name:
            return "update" if m == "PUT" else "patch"
        if m == "DELETE" and not route.subresource:
            return "delete" if route.name else "deletecollection"
        raise status.method_not_allowed(
            f"the server does not allow this method on the requested resource: {m}"
        )

    # ---- non-resource paths ------------------------------------------------------------------
    def _non_resource(self, req: HttpRequest) -> HttpResponse:
        path = req.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez") or path.startswith(("/healthz/", "/livez/")):
            return HttpResponse(200, b"ok", "text/plain; charset=utf-8")
        if path == "/readyz" or path.startswith("/readyz/"):
            if self.registry.storage.healthy():
                return HttpResponse(200, b"ok", "text/plain; charset=utf-8")
            return HttpResponse(
                500, b"[-]etcd failed: reason withheld\nreadyz check failed", "text/plain; charset=utf-8"
            )
        if req.method != "GET":
            raise status.method_not_allowed(f"{req.method} is not allowed on {path}")
        if path == "/version":
            return _json(200, discovery.version_info(self.version))
        resources = self.registry.resources()
        if path == "/openapi/v3":
            return _json(200, discovery.openapi_v3_index(resources))
        if path.startswith("/openapi/v3/"):
            spec = discovery.openapi_v3_doc(resources, path[len("/openapi/v3/") :], self.version)
            if spec is not None:
                return _json(200, spec)
        doc: Obj | None = None
        if path == "/api":
            doc = discovery.api_versions(self.address)
        elif path == "/api/v1":
            doc = discovery.resource_list(resources, "", "v1")
        elif path == "/apis":
            doc = discovery.api_group_list(resources)
        elif path.startswith("/apis/"):
            parts = path.split("/")[2:]
            if len(parts) == 1:
                doc = discovery.api_group(resources, parts[0])
            elif len(parts) == 2:
                doc = discovery.resource_list(resources, parts[0], parts[1])
        if doc is None:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        return _json(200, doc)

    # ---- resource verbs ----------------------------------------------------------------------
    def _body(self, req: HttpRequest) -> Any:
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype == protobuf.CONTENT_TYPE:
            try:
                return protobuf.decode_object(req.body)
            except (protobuf.ProtobufError, UnicodeDecodeError, KeyError) as exc:
                raise ApiStatus(415, "UnsupportedMediaType", str(exc)) from None
        if ctype not in ("application/json", "application/yaml", "application/apply-patch+yaml", ""):
            raise status.unsupported_media(ctype)
        try:
            if ctype in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(req.body.decode())
            return json.loads(req.body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise status.bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _dispatch(self, req: HttpRequest, route: Route, verb: str, user: auth.User) -> HttpResponse:
        if route.resource is None:
            return self._non_resource(req)
        res, ns, name, sub = route.resource, route.namespace, route.name, route.subresource
        reg, q = self.registry, req.query
        dry = q.get("dryRun") == "All"
        wants_table = "as=Table" in req.headers.get("accept", "")
        if verb == "list":
            preds = []
            if q.get("labelSelector"):
                preds.append(label_query(q["labelSelector"]))
            if q.get("fieldSelector"):
                preds.append(field_query(q["fieldSelector"]))
            objs, rev = reg.items(res, ns, *preds)
            if wants_table:
                return _json(200, table(res, objs, str(rev), q.get("includeObject", "")))
            meta = {"resourceVersion": str(rev)}
            return _json(
                200, {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": objs}
            )
        if verb == "get":
            obj = reg.get(res, ns, name)
            if wants_table and not sub:
                return _json(
                    200, table(res, [obj], obj["metadata"]["resourceVersion"], q.get("includeObject", ""))
                )
            return _json(200, obj)
        if verb == "create":
            if sub == "eviction":
                return _json(201, eviction.evict(reg, ns, name, self._body(req)))
            if sub == "binding":
                return _json(201, self._bind(ns, name, self._body(req), dry))
            return _json(201, reg.create(res, ns, self._body(req), user, dry))
        if verb == "update":
            return _json(200, reg.update(res, ns, name, self._body(req), sub, dry))
        if verb == "patch":
            ctype = req.headers.get("content-type", "")
            obj, created = reg.patch(res, ns, name, req.body, ctype, sub, q.get("fieldManager", ""), dry)
            return _json(201 if created else 200, obj)
        options = self._body(req) if req.body else {}
        if verb == "delete":
            return _json(200, reg.delete(res, ns, name, options if isinstance(options, dict) else {}, dry))
        preds = [label_query(q["labelSelector"])] if q.get("labelSelector") else []
        if q.get("fieldSelector"):
            preds.append(field_query(q["fieldSelector"]))
        objs, rev = reg.items(res, ns, *preds)
        deleted = [
            reg.delete(res, o["metadata"].get("namespace", ""), o["metadata"]["name"], dry_run=dry)
            for o in objs
        ]
        return _json(
            200, {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": {}, "items": deleted}
        )

    def _bind(self, namespace: str, name: str, body: Any, dry: bool) -> Obj:
        """pods/binding: what the scheduler posts to place a pod (spec.nodeName is otherwise immutable)."""
        pods = core("pods")
        target = (body or {}).get("target") or {} if isinstance(body, dict) else {}
        node = target.get("name")
        if not node:
            raise status.invalid(pods, name, "target.name", "Required value")
        old, kv = self.registry.read(pods, namespace, name)
        current = (old.get("spec") or {}).get("nodeName")
        if current:
            raise status.conflict(pods, name, f'pod {name} is already assigned to node "{current}"')
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["nodeName"] = node
        conds = [
            c
            for c in (new.setdefault("status", {}).get("conditions") or [])
            if c.get("type") != "PodScheduled"
        ]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": old["metadata"]["creationTimestamp"],
            }
        )
        new["status"]["conditions"] = conds
        self.registry.write_update(pods, kv, old, new, "binding", dry)
        return status.success(code=201)
