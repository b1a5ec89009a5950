"""The create-cluster phase implementations; importing this package registers them all."""

from capstan.tasks.create import apilb, artifacts, etcd, facts, osprep, pki, report, runtime

__all__ = ["apilb", "artifacts", "etcd", "facts", "osprep", "pki", "report", "runtime"]
