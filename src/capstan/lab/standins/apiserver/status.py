"""API errors as ``metav1.Status`` bodies with the real apiserver's codes, reasons and wording.

Why the wording matters: clients (kubectl, capstan's own kube layer) key on ``reason`` and print
``message``; a stand-in that answered 409 with another reason would let a wrong retry loop pass.
"""

from __future__ import annotations

from typing import Any

from .resources import Resource


class ApiStatus(Exception):
    """An error answer: HTTP code, Status reason, message and optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def success(details: dict[str, Any] | None = None, code: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        out["details"] = details
    out["code"] = code
    return out


def _details(res: Resource, name: str) -> dict[str, Any]:
    return {"name": name, "group": res.group, "kind": res.name}


def not_found(res: Resource, name: str) -> ApiStatus:
    return ApiStatus(404, "NotFound", f'{res.group_resource} "{name}" not found', _details(res, name))


def already_exists(res: Resource, name: str) -> ApiStatus:
    return ApiStatus(
        409, "AlreadyExists", f'{res.group_resource} "{name}" already exists', _details(res, name)
    )


def conflict(res: Resource, name: str, why: str = "") -> ApiStatus:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    msg = f'Operation cannot be fulfilled on {res.group_resource} "{name}": {why}'
    return ApiStatus(409, "Conflict", msg, _details(res, name))


def invalid(res: Resource, name: str, field: str, why: str) -> ApiStatus:
    msg = f'{res.kind} "{name}" is invalid: {field}: {why}'
    details = {**_details(res, name), "kind": res.kind, "causes": [{"field": field, "message": why}]}
    return ApiStatus(422, "Invalid", msg, details)


def bad_request(message: str) -> ApiStatus:
    return ApiStatus(400, "BadRequest", message)


def unauthorized() -> ApiStatus:
    return ApiStatus(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, res: Resource | None, namespace: str, path: str = "") -> ApiStatus:
    if res is None:
        return ApiStatus(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"')
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    msg = (
        f'{res.group_resource} is forbidden: User "{user}" cannot {verb} resource "{res.name}" '
        f'in API group "{res.group}" {scope}'
    )
    return ApiStatus(403, "Forbidden", msg, {"group": res.group, "kind": res.name})


def method_not_allowed(message: str) -> ApiStatus:
    return ApiStatus(405, "MethodNotAllowed", message)


def unsupported_media(content_type: str) -> ApiStatus:
    return ApiStatus(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
    )


def unavailable(message: str) -> ApiStatus:
    return ApiStatus(503, "ServiceUnavailable", message)
