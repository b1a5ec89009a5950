"""capstan's blocks on a real server: saved, loaded and validated; resolved as a flow's ``spec``; and a
private key used through a block never shows up in what the server keeps about the run."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from capstan.blocks import ClusterSpec, SSHCredentials
from capstan.errors import SpecError
from capstan.flows.source import resolve_spec

Platform = Any  # conftest.Platform
REPO = Path(__file__).resolve().parents[2]
CREATE = "create-cluster/default"


def throwaway_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return pem.decode()


def test_blocks_round_trip_and_resolve_as_spec(platform: Platform, tmp_path: Path) -> None:
    key = throwaway_key()
    creds = SSHCredentials(user="admin", port=2222, private_key=key, bastion="jump@192.0.2.1:2200")
    creds.save("rt-ssh", overwrite=True)
    text = (REPO / "examples" / "single.yaml").read_text()
    ClusterSpec(spec=text, credentials=creds).save("rt-spec", overwrite=True)

    for spec in ("block:rt-spec", "rt-spec"):  # a bare name is a block when no such file exists
        source = resolve_spec(spec)
        assert source.origin == "block capstan-cluster-spec/rt-spec"
        ssh = source.cluster.spec.ssh
        assert (ssh.user, ssh.port, ssh.key_path) == ("admin", 2222, None)
        assert ssh.bastion is not None and (ssh.bastion.user, ssh.bastion.port) == ("jump", 2200)
        assert source.private_key is not None and source.private_key.text == key
        assert key not in repr(source)

    # The API masks the secret unless asked for it explicitly (which is why the server needs auth).
    doc = platform.api("GET", "/block_types/slug/capstan-ssh-credentials/block_documents/name/rt-ssh")
    assert doc["data"]["private_key"] != key and "PRIVATE" not in str(doc)


def test_a_file_wins_over_a_block_of_the_same_name(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (REPO / "examples" / "single.yaml").read_text()
    ClusterSpec(spec=text).save("same-name", overwrite=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "same-name").write_text(text.replace("name: solo", "name: from-file"))
    assert resolve_spec("same-name").cluster.name == "from-file"
    assert resolve_spec("block:same-name").cluster.name == "solo"


def test_unknown_block_and_invalid_stored_spec_are_spec_errors(platform: Platform) -> None:
    with pytest.raises(
        SpecError, match=r"^spec: 'no-such-thing' is neither a file nor a capstan-cluster-spec"
    ):
        resolve_spec("no-such-thing")
    with pytest.raises(SpecError, match=r"block capstan-cluster-spec/no-such-thing: no such block"):
        resolve_spec("block:no-such-thing")

    # A document written through the API (as the UI does) is not checked by Python when saved; it is
    # checked when a flow loads it, and the error names the YAML path and the block.
    bad = (REPO / "examples" / "single.yaml").read_text().replace("control-plane", "controlplane")
    block_type = platform.api("GET", "/block_types/slug/capstan-cluster-spec")
    schemas = platform.api(
        "POST", "/block_schemas/filter", {"block_types": {"id": {"any_": [block_type["id"]]}}}
    )
    existing = platform.api(
        "POST", "/block_documents/filter", {"block_documents": {"name": {"any_": ["ui-made"]}}}
    )
    for d in existing:
        platform.api("DELETE", f"/block_documents/{d['id']}")
    platform.api(
        "POST",
        "/block_documents/",
        {
            "name": "ui-made",
            "data": {"spec": bad},
            "block_schema_id": schemas[0]["id"],
            "block_type_id": block_type["id"],
        },
    )
    with pytest.raises(SpecError) as info:
        resolve_spec("block:ui-made")
    assert str(info.value).startswith("spec.hosts[0].roles[0]: ")
    assert str(info.value).endswith("(in block capstan-cluster-spec/ui-made)")


def needles(key: str) -> list[bytes]:
    """The key, and every base64 body line of it (and those lines decoded), as bytes to search for."""
    body = [ln for ln in key.strip().splitlines() if ln and not ln.startswith("-----")]
    found = [key.encode(), "".join(body).encode()]
    for line in body:
        if len(line) >= 16:
            found.append(line.encode())
    found.append(base64.b64decode("".join(body))[-48:])  # raw key bytes sit at the end of the blob
    return found


def all_pages(platform: Platform, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = platform.api("POST", path, {**body, "offset": len(out), "limit": 200})
        out += page
        if len(page) < 200:
            return out


@pytest.mark.lab
def test_private_key_from_a_block_never_reaches_logs_artifacts_parameters_or_results(
    platform: Platform, platform_lab: Any
) -> None:
    lab = platform_lab
    key = lab.key_path.read_text()
    doc = yaml.safe_load(lab.spec_path.read_text())
    del doc["spec"]["ssh"]["keyPath"]  # the only way in is the block's key
    doc["metadata"]["name"] = f"{lab.name}-blk"
    creds = SSHCredentials(user="root", private_key=key)
    creds.save("platform-lab-ssh", overwrite=True)
    ClusterSpec(spec=yaml.safe_dump(doc), credentials=creds).save("platform-lab", overwrite=True)

    dep_id = platform.deployments[CREATE]
    # This run alone logs at DEBUG (a job variable of the process pool): the most text to search.
    body = {
        "parameters": {"spec": "block:platform-lab", "until": "facts"},
        "job_variables": {"env": {"PREFECT_LOGGING_LEVEL": "DEBUG"}},
    }
    run = platform.api("POST", f"/deployments/{dep_id}/create_flow_run", body)
    final = platform.wait_final(run["id"])
    assert final["state"]["type"] == "COMPLETED", final["state"]["message"]

    task_runs = platform.task_runs_with(run["id"], {"facts[cp1]", "facts[w1]"})
    assert {"facts[cp1]", "facts[w1]"} <= {t["name"] for t in task_runs}
    log_filter = {"logs": {"flow_run_id": {"any_": [run["id"]]}}}

    def final_log_arrived() -> bool:  # logs are shipped asynchronously: wait for the last one
        found = all_pages(platform, "/logs/filter", log_filter)
        flow_lines = [lg["message"] for lg in found if lg["task_run_id"] is None]
        return any("Finished in state Completed" in msg for msg in flow_lines)

    platform.wait_for("the run's last log line", final_log_arrived)
    logs = all_pages(platform, "/logs/filter", log_filter)
    artifacts = all_pages(platform, "/artifacts/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    assert any(lg["level"] < 20 for lg in logs)  # DEBUG lines arrived: there is plenty of text to search
    haystacks: dict[str, bytes] = {
        "logs": "\n".join(f"{lg['name']} {lg['message']}" for lg in logs).encode(),
        "artifacts": repr(artifacts).encode(),
        "flow run": repr(platform.flow_run(run["id"])).encode(),
        "task runs": repr(task_runs).encode(),
    }
    for path in sorted(platform.home.rglob("*")):  # persisted results, the worker's and server's files
        if path.is_file() and not path.name.startswith("prefect.db"):
            haystacks[str(path)] = path.read_bytes()
    for path in sorted(platform.logs.glob("*.log")):
        haystacks[str(path)] = path.read_bytes()

    # The needles are right: the API hands the key out when asked explicitly (hence auth on the server).
    secret_doc = platform.api(
        "POST",
        "/block_documents/filter",
        {"block_documents": {"name": {"any_": ["platform-lab-ssh"]}}, "include_secrets": True},
    )
    revealed = "".join(str(d["data"].get("private_key")) for d in secret_doc).encode()
    lines = [n for n in needles(key)[2:-1]]  # the key's base64 lines, as stored
    assert key.encode() in revealed and lines and all(n in revealed for n in lines)

    for where, data in haystacks.items():
        for needle in needles(key):
            assert needle not in data, f"key material found in {where}"
