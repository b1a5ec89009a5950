"""Per-resource rules applied on create and update (the real apiserver's "strategies" and admission).

Why these and not more: each rule here is one a capstan flow or kubectl can observe: pods start
Pending and cannot be moved by editing ``spec.nodeName`` (only the binding subresource places them),
Services get a ClusterIP from --service-cluster-ip-range, Secrets turn ``stringData`` into ``data``,
new Nodes get the not-ready taint (admission plugin TaintNodesByCondition, on unless disabled),
a workload's selector must match its template, CRDs become Established, a CSR records who asked.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
from typing import TYPE_CHECKING, Any

from . import status
from .resources import Resource
from .selectors import matches

if TYPE_CHECKING:
    from .registry import Registry

Obj = dict[str, Any]
_WORKLOADS = {"deployments", "replicasets", "statefulsets", "daemonsets"}
# pod spec fields an update may change (everything else is immutable on a real pod)
_POD_MUTABLE = ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations", "schedulingGates")


def prepare_create(reg: Registry, res: Resource, obj: Obj, user: Any) -> None:
    g, name = res.group, res.name
    if (g, name) == ("", "pods"):
        _pod_create(obj)
    elif (g, name) == ("", "nodes") and "TaintNodesByCondition" not in reg.disabled_admission:
        _taint_new_node(obj)
    elif (g, name) == ("", "namespaces"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif (g, name) == ("", "secrets"):
        _secret(obj)
    elif (g, name) == ("", "services"):
        _service(reg, res, obj, None)
    elif g == "apps" and name in _WORKLOADS:
        _workload(res, obj)
    elif (g, name) == ("policy", "poddisruptionbudgets"):
        _pdb(res, obj)
    elif (g, name) == ("apiextensions.k8s.io", "customresourcedefinitions"):
        _crd(res, obj)
    elif (g, name) == ("certificates.k8s.io", "certificatesigningrequests"):
        spec = obj.setdefault("spec", {})
        if not spec.get("request") or not spec.get("signerName"):
            raise status.invalid(
                res, obj["metadata"]["name"], "spec.request", "Required value: request and signerName"
            )
        spec["username"] = getattr(user, "name", "")
        spec["groups"] = list(getattr(user, "groups", ()))
        obj.pop("status", None)


def prepare_update(reg: Registry, res: Resource, new: Obj, old: Obj, subresource: str) -> None:
    g, name = res.group, res.name
    if (g, name) == ("", "pods") and subresource == "":
        _pod_update(res, new, old)
    elif (g, name) == ("", "secrets"):
        _secret(new)
    elif (g, name) == ("", "services") and subresource == "":
        _service(reg, res, new, old)
    elif g == "apps" and name in _WORKLOADS and subresource == "":
        _workload(res, new)
    elif (g, name) == ("policy", "poddisruptionbudgets") and subresource == "":
        _pdb(res, new)
    elif (g, name) == ("apiextensions.k8s.io", "customresourcedefinitions") and subresource == "":
        _crd(res, new)
    elif (g, name) == ("certificates.k8s.io", "certificatesigningrequests"):
        conditions = (new.get("status") or {}).get("conditions")
        certificate = (new.get("status") or {}).get("certificate")
        fresh = copy.deepcopy(old)
        st = fresh.setdefault("status", {})
        if subresource == "approval":
            st["conditions"] = conditions or []
        elif subresource == "status" and certificate:
            st["certificate"] = certificate
        new.clear()
        new.update(fresh)


NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


def _taint_new_node(obj: Obj) -> None:
    """Admission plugin TaintNodesByCondition: a new Node is NotReady until the node lifecycle
    controller, seeing its Ready condition, removes the taint (so nothing is scheduled there before)."""
    spec = obj.setdefault("spec", {})
    taints = spec.get("taints") or []
    if not any(t.get("key") == NOT_READY_TAINT["key"] and t.get("effect") == "NoSchedule" for t in taints):
        spec["taints"] = [*taints, dict(NOT_READY_TAINT)]


def _pod_create(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("containers"):
        raise status.ApiStatus(
            422, "Invalid", f'Pod "{obj["metadata"]["name"]}" is invalid: spec.containers: Required value'
        )
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    obj["status"] = {"phase": "Pending"}


def _pod_update(res: Resource, new: Obj, old: Obj) -> None:
    def frozen(spec: Any) -> Any:
        spec = copy.deepcopy(spec or {})
        for key in _POD_MUTABLE:
            spec.pop(key, None)
        for kind in ("containers", "initContainers"):
            for c in spec.get(kind) or []:
                if isinstance(c, dict):
                    c.pop("image", None)
        return spec

    if frozen(new.get("spec")) != frozen(old.get("spec")):
        why = (
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
            "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
            "`spec.tolerations` (only additions "
            "to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
            "was previously negative)"
        )
        raise status.invalid(res, new["metadata"]["name"], "spec", why)


def _secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {}) if string_data else obj.get("data")
    for k, v in string_data.items():
        assert isinstance(data, dict)
        data[k] = base64.b64encode(str(v).encode()).decode()
    for k, v in (obj.get("data") or {}).items():
        try:
            base64.b64decode(v, validate=True)
        except (ValueError, TypeError):
            raise status.bad_request(f"illegal base64 data in Secret data[{k!r}]") from None


def _service(reg: Registry, res: Resource, obj: Obj, old: Obj | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    name = obj["metadata"]["name"]
    if spec["type"] == "ExternalName":
        return
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if spec.get("clusterIP") in (None, ""):
            spec["clusterIP"] = old_ip
        elif old_ip and spec["clusterIP"] != old_ip:
            raise status.invalid(res, name, "spec.clusterIPs[0]", "Invalid value: field is immutable")
    rng = reg.service_range
    services, _ = reg.items(res)
    me = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
    others = [s for s in services if (s["metadata"].get("namespace"), s["metadata"]["name"]) != me]
    used = {(s.get("spec") or {}).get("clusterIP") for s in others}
    ip = spec.get("clusterIP")
    if ip in (None, "") and old is None and rng is not None:
        hosts = list(rng.hosts())[:4096]
        start = min(max(16, len(hosts) // 16), len(hosts) - 1)
        free = next((h for h in hosts[start:] + hosts[:start] if str(h) not in used), None)
        if free is None:
            raise status.ApiStatus(500, "InternalError", "failed to allocate a serviceIP: range is full")
        ip = spec["clusterIP"] = str(free)
    elif ip and ip != "None" and old is None:
        if rng is not None and ipaddress.ip_address(ip) not in rng:
            why = f'Invalid value: "{ip}": provided IP is not in the valid range. '
            why += f"The range of valid IPs is {rng}"
            raise status.invalid(res, name, "spec.clusterIPs", why)
        if ip in used:
            raise status.invalid(
                res, name, "spec.clusterIPs", f'Invalid value: "{ip}": provided IP is already allocated'
            )
    if ip:
        spec["clusterIPs"] = [ip]
    if spec["type"] in ("NodePort", "LoadBalancer"):
        taken = {p.get("nodePort") for s in others for p in (s.get("spec") or {}).get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                port["nodePort"] = next(n for n in range(30000, 32768) if n not in taken)
                taken.add(port["nodePort"])


def _workload(res: Resource, obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    name = obj["metadata"]["name"]
    if res.name != "daemonsets":
        spec.setdefault("replicas", 1)
    selector = spec.get("selector")
    if not selector:
        raise status.invalid(res, name, "spec.selector", "Required value")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not matches(selector, {str(k): str(v) for k, v in labels.items()}):
        raise status.invalid(
            res,
            name,
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        )


def _pdb(res: Resource, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    if "minAvailable" in spec and "maxUnavailable" in spec:
        raise status.invalid(
            res,
            obj["metadata"]["name"],
            "spec",
            "Invalid value: minAvailable and maxUnavailable cannot be both set",
        )


def _crd(res: Resource, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    want = f"{names.get('plural')}.{spec.get('group')}"
    if obj["metadata"]["name"] != want:
        raise status.invalid(
            res,
            obj["metadata"]["name"],
            "metadata.name",
            f'Invalid value: must be spec.names.plural+"."+spec.group ({want})',
        )
    accepted = {
        "plural": names.get("plural"),
        "kind": names.get("kind"),
        "listKind": names.get("listKind") or f"{names.get('kind')}List",
    }
    accepted["singular"] = names.get("singular") or str(names.get("kind", "")).lower()
    for k in ("shortNames", "categories"):
        if names.get(k):
            accepted[k] = names[k]
    ok = [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        },
    ]
    stored = [v["name"] for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("storage")]
    obj["status"] = {"acceptedNames": accepted, "conditions": ok, "storedVersions": stored}
