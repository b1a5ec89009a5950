"""The create-cluster phase implementations; importing this package registers them all."""

from capstan.tasks.create import (
    addons,
    apilb,
    artifacts,
    controlplane,
    etcd,
    facts,
    osprep,
    pki,
    report,
    runtime,
    workers,
)

__all__ = [
    "addons",
    "apilb",
    "artifacts",
    "controlplane",
    "etcd",
    "facts",
    "osprep",
    "pki",
    "report",
    "runtime",
    "workers",
]
