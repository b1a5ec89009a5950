"""Decoding the protobuf request bodies that kubectl's typed clients send, for a few kinds.

Why at all: kubectl 1.32 sends ``application/vnd.kubernetes.protobuf`` bodies from its typed clients
(``kubectl create namespace``, the Eviction that ``kubectl drain`` posts, ``kubectl create
configmap|secret``, ``kubectl certificate approve``) and does not fall back to JSON on 415. Answers
stay JSON (kubectl also accepts JSON). Only the kinds in ``KINDS`` are decoded, with the field numbers
of the k8s.io/api generated.proto files; any other protobuf body gets 415 naming the kind.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# message name -> field number -> (json name, type, repeated); types: string, bytes, bool, int, time,
# map (string->string), bmap (string->bytes, as base64), or another message name
Schema = dict[int, tuple[str, str, bool]]
SCHEMAS: dict[str, Schema] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False)},
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "ObjectMeta": {
        1: ("name", "string", False),
        2: ("generateName", "string", False),
        3: ("namespace", "string", False),
        5: ("uid", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("generation", "int", False),
        8: ("creationTimestamp", "time", False),
        9: ("deletionTimestamp", "time", False),
        10: ("deletionGracePeriodSeconds", "int", False),
        11: ("labels", "map", False),
        12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "string", True),
    },
    "OwnerReference": {
        1: ("kind", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "Eviction": {1: ("metadata", "ObjectMeta", False), 2: ("deleteOptions", "DeleteOptions", False)},
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int", False),
        2: ("preconditions", "Preconditions", False),
        3: ("orphanDependents", "bool", False),
        4: ("propagationPolicy", "string", False),
        5: ("dryRun", "string", True),
    },
    "Preconditions": {1: ("uid", "string", False), 2: ("resourceVersion", "string", False)},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map", False),
        3: ("binaryData", "bmap", False),
        4: ("immutable", "bool", False),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "bmap", False),
        3: ("type", "string", False),
        4: ("stringData", "map", False),
        5: ("immutable", "bool", False),
    },
    "CertificateSigningRequest": {
        1: ("metadata", "ObjectMeta", False),
        2: ("spec", "CSRSpec", False),
        3: ("status", "CSRStatus", False),
    },
    "CSRSpec": {
        1: ("request", "bytes", False),
        2: ("username", "string", False),
        3: ("uid", "string", False),
        4: ("groups", "string", True),
        5: ("usages", "string", True),
        7: ("signerName", "string", False),
        8: ("expirationSeconds", "int", False),
    },
    "CSRStatus": {1: ("conditions", "CSRCondition", True), 2: ("certificate", "bytes", False)},
    "CSRCondition": {
        1: ("type", "string", False),
        2: ("reason", "string", False),
        3: ("message", "string", False),
        4: ("lastUpdateTime", "time", False),
        5: ("lastTransitionTime", "time", False),
        6: ("status", "string", False),
    },
}
_SCALARS = {"string", "bytes", "bool", "int", "time"}
KINDS = {"Namespace", "Eviction", "ConfigMap", "Secret", "CertificateSigningRequest"}


class ProtobufError(Exception):
    """The body is not a Kubernetes protobuf envelope, or not of a kind decoded here."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for every field of one message (no schema needed)."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def _scalar(kind: str, value: Any) -> Any:
    if kind == "string":
        return bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "time":
        secs = {n: v for n, _, v in fields(bytes(value))}.get(1, 0)
        return (
            datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if 0 < secs < 1 << 62 else None
        )
    return decode(kind, bytes(value))


def decode(message: str, data: bytes) -> dict[str, Any]:
    schema = SCHEMAS[message]
    out: dict[str, Any] = {}
    for num, _wire, value in fields(data):
        if num not in schema:
            continue  # a field this stand-in does not model
        name, kind, repeated = schema[num]
        if kind in ("map", "bmap"):
            entry = {n: v for n, _, v in fields(bytes(value))}
            key = bytes(entry.get(1, b"")).decode()
            raw = bytes(entry.get(2, b""))
            out.setdefault(name, {})[key] = raw.decode() if kind == "map" else base64.b64encode(raw).decode()
        elif repeated:
            out.setdefault(name, []).append(_scalar(kind, value))
        elif kind not in _SCALARS or value not in (0, b""):  # proto2 sends zero values; JSON omits them
            out[name] = _scalar(kind, value)
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (``k8s\\0`` + runtime.Unknown envelope)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic number")
    envelope = {n: v for n, _, v in fields(body[len(MAGIC) :])}
    type_meta = decode("TypeMeta", bytes(envelope.get(1, b"")))
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not decoded by the stand-in (send JSON)")
    obj = decode(kind, bytes(envelope.get(2, b"")))
    obj["apiVersion"], obj["kind"] = type_meta.get("apiVersion", ""), kind
    return obj
