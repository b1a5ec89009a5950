"""capstan: Kubernetes cluster lifecycle on your own machines, as Prefect flows of SSH tasks."""

__version__ = "0.1.0"
