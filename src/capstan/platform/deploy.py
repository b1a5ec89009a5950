"""``capstan deploy``: everything a Prefect server needs before capstan's flows can run there.

1. the work pools named in ``prefect.yaml`` exist (process type; created when missing);
2. capstan's block types are registered (same as ``prefect block register -m capstan.blocks``);
3. every deployment in ``prefect.yaml`` is registered by ``prefect --no-prompt deploy --all``, the
   command people would run by hand, from a copy with the overrides applied (schedule timezone,
   parameters), so the file in the repository stays the one source.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from capstan.platform.server import PlatformError, api_healthy, prefect_argv, process_env

PREFECT_FILE = "prefect.yaml"


@dataclass(frozen=True)
class Deployed:
    """A registered deployment: ``flow/name`` and its id."""

    full_name: str
    id: str


def find_prefect_file(path: Path | None = None) -> Path:
    """The given file, else ./prefect.yaml, else the one at the root of capstan's source tree."""
    if path is not None:
        if not path.is_file():
            raise PlatformError(f"{path}: no such file")
        return path
    here = Path.cwd() / PREFECT_FILE
    if here.is_file():
        return here
    source_root = Path(__file__).resolve().parents[3] / PREFECT_FILE
    if source_root.is_file():
        return source_root
    raise PlatformError(f"no {PREFECT_FILE} here or in capstan's source tree; pass --prefect-file")


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PlatformError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list):
        raise PlatformError(f"{path}: expected a prefect.yaml with a deployments: list")
    return data


def pool_names(config: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for dep in config["deployments"]:
        name = (dep.get("work_pool") or {}).get("name")
        if name and name not in names:
            names.append(name)
    return names


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``DEPLOYMENT:KEY=VALUE`` (``VALUE`` as JSON when it parses, else a string), e.g.
    ``nightly:keep=14`` or ``backup-etcd/nightly:spec=block:prod``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, assignment = item.partition(":")
        key, eq, raw = assignment.partition("=")
        if not sep or not eq or not target or not key:
            raise PlatformError(f"--param {item!r}: expected DEPLOYMENT:KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(target, {})[key] = value
    return out


def _matches(target: str, dep: Mapping[str, Any], flow_name: str) -> bool:
    return target in (dep.get("name"), f"{flow_name}/{dep.get('name')}")


def apply_overrides(
    config: dict[str, Any],
    *,
    flow_names: Mapping[str, str],
    timezone: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of ``config`` with every schedule's timezone and the given parameters replaced."""
    if timezone is not None:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise PlatformError(f"--timezone {timezone!r}: not a known IANA timezone") from None
    out: dict[str, Any] = json.loads(json.dumps(config))  # deep copy; the loader expanded the anchors
    unused = set(params or {})
    for dep in out["deployments"]:
        flow_name = flow_names.get(dep.get("entrypoint", ""), "")
        for schedule in dep.get("schedules") or []:
            if timezone is not None:
                schedule["timezone"] = timezone
        for target, values in (params or {}).items():
            if _matches(target, dep, flow_name):
                dep.setdefault("parameters", {}).update(values)
                unused.discard(target)
    if unused:
        raise PlatformError(f"--param: no deployment named {', '.join(sorted(unused))} in prefect.yaml")
    return out


def flow_names(config: Mapping[str, Any]) -> dict[str, str]:
    """entrypoint -> flow name, by importing each flow (a broken entrypoint fails here, clearly)."""
    from prefect.flows import load_flow_from_entrypoint

    names: dict[str, str] = {}
    for dep in config["deployments"]:
        entrypoint = dep.get("entrypoint")
        if not entrypoint:
            raise PlatformError(f"deployment {dep.get('name')!r} has no entrypoint")
        try:
            names[entrypoint] = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False).name
        except Exception as exc:  # import errors of any kind: report the entrypoint
            raise PlatformError(f"entrypoint {entrypoint}: cannot load the flow: {exc}") from None
    return names


def ensure_pools(names: Sequence[str]) -> list[str]:
    """Create the missing work pools (process type); return the names created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created: list[str] = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                try:
                    client.create_work_pool(WorkPoolCreate(name=name, type="process"))
                    created.append(name)
                except ObjectAlreadyExists:
                    pass
    return created


def register_blocks() -> None:
    from capstan.blocks import ClusterSpec, SSHCredentials

    for block in (SSHCredentials, ClusterSpec):
        block.register_type_and_schema()


def current_api_url() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise PlatformError(
            "no Prefect server configured: set PREFECT_API_URL (`capstan server` prints it) "
            "or select a profile that has one"
        )
    return str(url)


def read_deployments(full_names: Sequence[str]) -> list[Deployed]:
    from prefect.client.orchestration import get_client

    out = []
    with get_client(sync_client=True) as client:
        for full in full_names:
            dep = client.read_deployment_by_name(full)
            out.append(Deployed(full, str(dep.id)))
    return out


def deploy(
    prefect_file: Path | None = None,
    *,
    timezone: str | None = None,
    params: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> list[Deployed]:
    """Pools, blocks and every deployment of ``prefect_file``; return what was registered."""
    path = find_prefect_file(prefect_file)
    api_url = current_api_url()
    if not api_healthy(api_url):
        raise PlatformError(f"the Prefect API at {api_url} does not answer (is the server running?)")
    config = load_config(path)
    names = flow_names(config)
    effective = apply_overrides(config, flow_names=names, timezone=timezone, params=parse_overrides(params))
    ensure_pools(pool_names(effective))
    register_blocks()
    with tempfile.TemporaryDirectory(prefix="capstan-deploy-") as tmp:
        copy = Path(tmp) / PREFECT_FILE
        copy.write_text(yaml.safe_dump(effective, sort_keys=False), encoding="utf-8")
        res = subprocess.run(
            prefect_argv("--no-prompt", "deploy", "--all", "--prefect-file", str(copy)),
            cwd=path.parent,
            env=process_env(api_url=api_url, base=env),
            capture_output=True,
            text=True,
            timeout=600,
        )
    if res.returncode != 0:
        lines = [ln.strip(" │╭╮╰╯─") for ln in (res.stderr + res.stdout).splitlines()]
        tail = " | ".join(ln for ln in lines if ln.strip())[-600:]
        raise PlatformError(f"prefect deploy failed (exit {res.returncode}): {tail}")
    return read_deployments([f"{names[d['entrypoint']]}/{d['name']}" for d in effective["deployments"]])
