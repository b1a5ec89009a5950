"""``capstan import kubespray``: turn a Kubespray inventory and its group_vars into a ``cluster.yaml``.

Public API: :func:`import_kubespray` returns an :class:`ImportResult` (the validated Cluster and every
warning); :func:`cli_main` is the command's body (write the file, warnings to stderr). Kubespray's
variable names and defaults are facts this package maps; no Kubespray code is used.
"""

from capstan.importers.kubespray.api import ImportResult, cli_main, import_kubespray

__all__ = ["ImportResult", "cli_main", "import_kubespray"]
