"""Prefect blocks capstan reads: SSH credentials and cluster specs kept in the Prefect server.

Register the types once per server with ``prefect block register -m capstan.blocks`` (``capstan
deploy`` does it too); then create documents from the UI or from Python::

    creds = SSHCredentials(user="root", private_key=open("id_ed25519").read())
    creds.save("prod-ssh")
    ClusterSpec(spec=open("cluster.yaml").read(), credentials=creds).save("prod")

and run any flow with ``spec="block:prod"``. Block data is encrypted at rest by the server, but the
encryption key lives in the same database and the API returns secrets to anyone who asks with
``include_secrets``: protect the server as you would the key (see the README).
"""

from capstan.blocks.cluster import ClusterSpec
from capstan.blocks.ssh import SSHCredentials, parse_bastion

__all__ = ["ClusterSpec", "SSHCredentials", "parse_bastion"]
