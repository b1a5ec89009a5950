"""kube-apiserver, kube-controller-manager and kube-scheduler stand-ins for the lab.

Entry points (the zipapp packaging calls these with the Kubernetes version it builds for):
``main(argv, version)`` (kube-apiserver), ``controller.main(argv, version)`` and
``scheduler.main(argv, version)``.
"""

from .main import main

__all__ = ["main"]
