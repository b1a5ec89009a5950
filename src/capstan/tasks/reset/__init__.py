"""reset-cluster's per-host work: the pure plan (``plan``) and the phase that applies it (``phase``)."""

from capstan.tasks.reset import phase as phase  # registers the phase implementation
