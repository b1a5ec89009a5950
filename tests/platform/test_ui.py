"""The Prefect UI as a person sees it, for capstan's deployments and runs.

A real server and worker (the ``platform`` fixture) and Debian's headless Chromium, driven by
scripts/ui_screenshots.py. Three things are checked:
- the run form of create-cluster/default shows every parameter with the description from the flow's
  docstring;
- a finished create-cluster run (a real one, on two lab hosts) lists its task runs (``etcd[cp1]`` ...)
  and its artifacts by name;
- the PNGs are real pages, not a blank page or a spinner. The blank check is shown to fail on a blank
  page.

The schema test needs no browser. Every deployment's parameter schema, as the API serves it, is what
the form is built from: each parameter must have a type, a description that survives Markdown, and
the flow's default.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

Platform = Any  # conftest.Platform (test folders are not packages here: `platform` is a stdlib name)
REPO = Path(__file__).resolve().parents[2]
CREATE = "create-cluster/default"


def _load_script() -> ModuleType:
    path = REPO / "scripts" / "ui_screenshots.py"
    spec = importlib.util.spec_from_file_location("ui_screenshots", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


ui = _load_script()
needs_chromium = pytest.mark.skipif(
    ui.find_chromium() is None, reason="needs Debian's chromium (scripts/install-deps.sh installs it)"
)


# ---- the PNG check, without a browser ------------------------------------------------------------
def _filtered(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    """PNG row filter ``kind`` applied to ``line`` (the encoder's side, written from the PNG spec)."""
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pred = [0, a, b, (a + b) // 2, min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]]
        out.append((x - pred[kind]) & 255)
    return bytes(out)


def _png(rows: list[bytes], width: int, bpp: int, kinds: list[int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw, prev = b"", bytes(width * bpp)
    for row, kind in zip(rows, kinds, strict=True):
        raw += bytes([kind]) + _filtered(kind, row, prev, bpp)
        prev = row
    header = struct.pack(">IIBBBBB", width, len(rows), 8, 2 if bpp == 3 else 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("bpp", [3, 4])
def test_png_decoder_undoes_every_row_filter(tmp_path: Path, bpp: int) -> None:
    width = 7
    rows = [bytes((x * 37 + y * 91 + c * 13 + (x * y) % 5) & 255 for x in range(width) for c in range(bpp))
            for y in range(10)]  # fmt: skip
    kinds = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]
    path = tmp_path / "t.png"
    path.write_bytes(_png(rows, width, bpp, kinds))
    assert ui.png_rows(path) == (width, len(rows), bpp, rows)


def test_a_one_colour_page_is_reported_blank(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    dark = bytes([38, 39, 43]) * 40
    path.write_bytes(_png([dark] * 30, 40, 3, [2] * 30))
    dominant, colours = ui.png_colours(path, step=1)
    assert (dominant, colours) == (1.0, 1)
    with pytest.raises(ui.UiCheckError, match="looks blank"):
        ui.check_not_blank(ui.Shot("about:blank", path, "", dominant, colours))


# ---- the parameter schemas the form is built from ----------------------------------------------------
def _flow_function(entrypoint: str) -> Any:
    module, _, name = entrypoint.rpartition(".")
    return getattr(importlib.import_module(module), name).fn


def _typed(prop: dict[str, Any]) -> bool:
    if "type" in prop:
        return True
    variants = prop.get("anyOf") or prop.get("oneOf") or []
    return bool(variants) and all("type" in v or "$ref" in v for v in variants)


def test_every_deployment_parameter_is_typed_described_and_defaulted_like_its_flow(
    platform: Platform,
) -> None:
    problems: list[str] = []
    for full_name, dep_id in sorted(platform.deployments.items()):
        dep = platform.api("GET", f"/deployments/{dep_id}")
        schema = dep["parameter_openapi_schema"]
        props: dict[str, Any] = schema.get("properties", {})
        signature = inspect.signature(_flow_function(dep["entrypoint"]))
        if set(props) != set(signature.parameters):
            problems.append(f"{full_name}: schema {sorted(props)} != flow {sorted(signature.parameters)}")
        for name, param in signature.parameters.items():
            prop = props.get(name, {})
            where = f"{full_name}: parameter {name}"
            if not _typed(prop):
                problems.append(f"{where} has no type (annotate it)")
            description = str(prop.get("description") or "")
            if not description:
                problems.append(f"{where} has no description (document it under Args: in the docstring)")
            outside_code = re.sub(r"`[^`]*`", "", description)
            if re.search(r"<[A-Za-z/]", outside_code):  # Markdown drops it as an HTML tag
                problems.append(f"{where}: {description!r} shows without its <...> (put it in backticks)")
            if param.default is inspect.Parameter.empty:
                if name not in schema.get("required", []):
                    problems.append(f"{where} is required by the flow but not by the schema")
            elif "default" not in prop:
                problems.append(f"{where} has no default in the schema (flow: {param.default!r})")
            elif json.loads(json.dumps(prop["default"])) != json.loads(json.dumps(param.default)):
                problems.append(f"{where}: schema default {prop['default']!r} != flow {param.default!r}")
    assert not problems, "\n".join(problems)


# ---- in the browser --------------------------------------------------------------------------------
@needs_chromium
def test_create_cluster_run_form_shows_every_parameter_with_its_description(
    platform: Platform, tmp_path: Path
) -> None:
    api = ui.Api(platform.api_url)
    with ui.Browser() as browser:
        shot = ui.deployment_page(browser, api, CREATE, tmp_path)
        blank = browser.shoot("about:blank", [], tmp_path / "blank.png")
    assert any(u.startswith(f"{api.ui}/api/") for u in browser.requests)  # the page did fetch the API
    assert ui.offsite(browser.requests) == []  # and nothing beyond 127.0.0.1
    text = " ".join(shot.text.split())
    for needle in ("create-cluster", "spec", "until (Optional)", "dry_run (Optional)", "Submit"):
        assert needle in text
    assert "the cluster spec: block:<name> (a capstan cluster spec block" in text
    assert "gather facts and report what would change, without changing anything." in text
    assert 'stop after this phase (e.g. "os-prep"); all phases when empty.' in text
    assert shot.dominant < 0.9 and shot.colours > 100, (shot.dominant, shot.colours)
    with pytest.raises(ui.UiCheckError, match="looks blank"):
        ui.check_not_blank(blank)


@needs_chromium
@pytest.mark.lab
def test_finished_create_run_page_lists_its_task_runs_and_artifacts(
    platform: Platform, platform_lab: Any, tmp_path: Path
) -> None:
    """A full create-cluster run of the two-host lab, through the deployment and the worker."""
    lab = platform_lab
    body = {
        "parameters": {"spec": str(lab.spec_path)},
        "job_variables": {"env": {"CAPSTAN_HOME": str(tmp_path / "capstan-home")}},  # admin.conf here
    }
    run = platform.api("POST", f"/deployments/{platform.deployments[CREATE]}/create_flow_run", body)
    final = platform.wait_final(run["id"], timeout=1200)
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
    want = {"facts[cp1]", "facts[w1]", "etcd[cp1]", "cp-init[cp1]", "worker-join[w1]"}
    names = [t["name"] for t in platform.task_runs_with(run["id"], want)]
    assert want <= set(names)

    out = tmp_path / "ui"
    assert ui.main(["--api", platform.api_url, "--out", str(out), "--flow-run", run["id"]]) == 0
    runs = (out / "flow-run.txt").read_text()
    assert final["name"] in runs and "create-cluster" in runs
    shown = set(runs.split("\n"))
    assert set(names) <= shown, sorted(set(names) - shown)
    arts = (out / "flow-run-artifacts.txt").read_text()
    for key in (f"create-{lab.name}", f"create-{lab.name}-hosts"):
        assert key in arts.split("\n"), key
    for png in ("deployment.png", "flow-run.png", "flow-run-artifacts.png"):
        dominant, colours = ui.png_colours(out / png)
        assert dominant < 0.9 and colours > 100, (png, dominant, colours)
