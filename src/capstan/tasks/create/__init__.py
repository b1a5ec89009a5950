"""The create-cluster phase implementations; importing this package registers them all."""

from capstan.tasks.create import facts, osprep, report

__all__ = ["facts", "osprep", "report"]
