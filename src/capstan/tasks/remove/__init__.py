"""remove-node's pure plan (``model``), its reads of the cluster (``remote``) and its phases (``phases``)."""

from capstan.tasks.remove import phases as phases  # registers the phase implementations
