"""Certificate check and renewal on a running cluster (``capstan certs``): model (pure) and remote steps."""
