"""upgrade-cluster's planning (``plan``, pure) and host steps (``steps``; importing it registers them)."""

from capstan.tasks.upgrade import steps  # noqa: F401  (registers the phase implementations)
