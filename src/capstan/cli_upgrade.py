"""``capstan upgrade``: the upgrade-cluster flow from the command line (mounted by ``capstan.cli._mount``).

The version rules and the spec are checked before Prefect starts, so ``--to 1.99.0`` or a typo in the
spec is one line and exit code 2, not a failed flow run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:
    from capstan.tasks.upgrade.plan import PauseMode

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@app.command()
def upgrade(
    file: Annotated[str, typer.Option("-f", "--file", help="cluster spec: cluster.yaml or block:<name>")],
    to: Annotated[
        str, typer.Option("--to", help="Kubernetes version to upgrade to (default: the spec's)")
    ] = "",
    force: Annotated[
        bool, typer.Option("--force", help="go on although a node is NotReady or etcd is unhealthy")
    ] = False,
    pause: Annotated[
        str | None, typer.Option("--pause", help="none, before-node or after-node (default: the spec's)")
    ] = None,
) -> None:
    """Upgrade Kubernetes one minor version at a time: etcd snapshot, control planes, worker batches."""
    from capstan.prefect_env import apply_defaults

    apply_defaults()
    from capstan.flows.source import resolve_spec
    from capstan.tasks.upgrade.plan import pauses, target_version
    from capstan.versions import default_kubernetes_version

    path = Path(file).expanduser()
    spec = str(path.resolve()) if path.exists() else file
    cluster = resolve_spec(spec).cluster  # a bad spec is reported before Prefect starts
    target_version(to or cluster.spec.kubernetes.version or default_kubernetes_version())
    pauses(cluster.spec.upgrade, pause)
    from capstan.flows.upgrade import upgrade_cluster
    from capstan.prefect_env import quiet_console_tracebacks

    quiet_console_tracebacks()
    mode = cast("PauseMode | None", pause)  # checked by pauses() above
    result = upgrade_cluster(spec=spec, to_version=to, force=force, pause=mode)
    typer.echo(f"upgraded to v{result['to_version']}: {', '.join(result['upgraded']) or 'nothing to do'}")
    if result["already"]:
        typer.echo(f"already at v{result['to_version']}: {', '.join(result['already'])}")
    for host, info in result["hosts"].items():
        typer.echo(f"{host}: {info['changed']} changed, {info['unchanged']} unchanged")
