"""``ClusterSpec``: a cluster's ``cluster.yaml`` kept in the Prefect server, with its SSH credentials.

The YAML is validated by capstan's own loader whenever a block object is built: when it is created in
Python (so ``save`` never stores an invalid spec) and when it is loaded (a document created or edited
in the UI is checked before any flow uses it). Errors are ``SpecError`` naming the YAML path.

With a credentials block, the block's user, port and bastion are the cluster-wide SSH settings and its
key replaces ``spec.ssh.keyPath``; a spec that also sets ``spec.ssh.user``/``port``/``bastion`` to
something else is rejected rather than silently overridden (per-host overrides still apply).
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, field_validator, model_validator

from capstan.blocks.ssh import SSHCredentials
from capstan.errors import SpecError
from capstan.spec import parse_spec_text
from capstan.spec.models import Cluster


class ClusterSpec(Block):
    """A capstan cluster spec (the cluster.yaml text) and the SSH credentials block it uses."""

    _block_type_name: ClassVar[str | None] = "capstan cluster spec"
    _block_type_slug: ClassVar[str | None] = "capstan-cluster-spec"
    _description: ClassVar[str | None] = (
        "A capstan cluster.yaml, validated by capstan, with a reference to its SSH credentials block. "
        "Run any capstan flow with spec='block:<name>'."
    )
    model_config = ConfigDict(validate_assignment=True)

    spec: str = Field(description="the cluster.yaml document (apiVersion capstan.dev/v1alpha1, kind Cluster)")
    credentials: SSHCredentials | None = Field(
        default=None, description="SSH credentials block; when empty, spec.ssh.keyPath on the worker is used"
    )

    @field_validator("spec")
    @classmethod
    def _valid_spec(cls, text: str) -> str:
        parse_spec_text(text, source="cluster spec block")
        return text

    @model_validator(mode="after")
    def _no_conflicting_ssh(self) -> ClusterSpec:
        if self.credentials is not None:
            ssh_conflicts(parse_spec_text(self.spec), self.credentials)
        return self

    def cluster(self) -> Cluster:
        """The validated cluster, with the credentials' user, port and bastion applied."""
        cluster = parse_spec_text(self.spec, source="cluster spec block")
        if self.credentials is None:
            return cluster
        ssh = cluster.spec.ssh.model_copy(
            update={
                "user": self.credentials.user,
                "port": self.credentials.port,
                "bastion": self.credentials.bastion_spec() or cluster.spec.ssh.bastion,
                "key_path": None,
            }
        )
        return cluster.model_copy(update={"spec": cluster.spec.model_copy(update={"ssh": ssh})})


def ssh_conflicts(cluster: Cluster, creds: SSHCredentials) -> None:
    """Reject a spec whose explicit cluster-wide SSH settings disagree with the credentials block."""
    ssh = cluster.spec.ssh
    given = ssh.model_fields_set
    if "user" in given and ssh.user != creds.user:
        raise SpecError("spec.ssh.user", f"{ssh.user!r} differs from the credentials block's {creds.user!r}")
    if "port" in given and ssh.port != creds.port:
        raise SpecError("spec.ssh.port", f"{ssh.port} differs from the credentials block's {creds.port}")
    bastion = creds.bastion_spec()
    if bastion is not None and ssh.bastion is not None and ssh.bastion != bastion:
        raise SpecError(
            "spec.ssh.bastion", "differs from the credentials block's bastion; set it in one place"
        )
