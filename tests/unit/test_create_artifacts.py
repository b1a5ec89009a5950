"""artifacts phase: what each role gets, pull/push plans, and the orchestrator's verified download."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_create_support import SimHost, changed, cluster, sha, spec_doc, words

from capstan.errors import ArtifactError
from capstan.ops import Command, Op, PutFile
from capstan.spec import parse_spec
from capstan.spec.models import Cluster
from capstan.tasks.create.artifacts import (
    Install,
    artifacts_query,
    download,
    etcd_top,
    installs_for,
    needs_bytes,
    pinned,
    pull_ops,
    push_ops,
)
from capstan.versions import Artifact


def by_dest(installs: list[Install]) -> dict[str, Install]:
    return {i.dest: i for i in installs}


def test_a_worker_gets_node_binaries_and_no_etcd() -> None:
    c = cluster()
    dests = by_dest(installs_for(c, c.host("w1"), "etcd-v3.6.14-linux-amd64"))
    assert set(dests) == {
        *(f"/usr/local/bin/{n}" for n in ("kubeadm", "kubelet", "kubectl", "runc", "crictl")),
        *(f"/usr/local/bin/{n}" for n in ("containerd", "ctr", "containerd-shim-runc-v2")),
        *(f"/opt/cni/bin/{n}" for n in ("bridge", "host-local", "loopback", "portmap")),
    }
    assert dests["/usr/local/bin/ctr"] == Install("containerd", "/usr/local/bin/ctr", "bin/ctr")
    assert dests["/usr/local/bin/runc"].member is None


def test_etcd_members_get_etcd_and_etcdctl_from_the_release_archive() -> None:
    c = cluster()
    arts = pinned(c, "amd64")
    top = etcd_top(arts["etcd"])
    assert top == "etcd-v3.6.14-linux-amd64"
    dests = by_dest(installs_for(c, c.host("cp1"), top))
    assert dests["/usr/local/bin/etcdctl"] == Install("etcd", "/usr/local/bin/etcdctl", f"{top}/etcdctl")
    assert "/usr/local/bin/kubelet" in dests


def test_an_etcd_only_host_gets_only_etcd() -> None:
    doc = spec_doc()
    doc["spec"]["hosts"] = [
        {"name": "cp1", "address": "10.0.0.11", "roles": ["control-plane"]},
        {"name": "e1", "address": "10.0.0.31", "roles": ["etcd"]},
    ]
    c = parse_spec(doc)
    assert {i.artifact for i in installs_for(c, c.host("e1"), "top")} == {"etcd"}


def test_cri_o_nodes_get_the_bundle_and_no_separate_runc() -> None:
    c = cluster(containerRuntime={"name": "cri-o"})
    dests = by_dest(installs_for(c, c.host("w1")))
    assert dests["/usr/local/bin/crio"] == Install("crio", "/usr/local/bin/crio", "cri-o/bin/crio")
    assert dests["/usr/libexec/crio/conmon"].member == "cri-o/bin/conmon"
    assert "/usr/local/bin/runc" not in dests and "/usr/local/bin/containerd" not in dests
    assert "crio" in pinned(c, "amd64") and "runc" not in pinned(c, "amd64")


def plan_all(sim: SimHost, c: Cluster, host: str) -> list[Op]:
    arts = pinned(c, sim.arch)
    installs = installs_for(c, c.host(host), etcd_top(arts["etcd"]))
    facts = sim.facts(artifacts_query(installs_for(c, c.host(host))))
    groups: dict[str, list[Install]] = {}
    for i in installs:
        groups.setdefault(i.artifact, []).append(i)
    return [op for name, todo in groups.items() for op in pull_ops(facts, arts[name], todo)]


def test_pull_on_a_fresh_host_downloads_each_artifact_once_then_converges() -> None:
    c = cluster(artifacts={"mode": "pull", "mirror": "http://mirror.example"})
    sim = SimHost("cp1")
    ops = plan_all(sim, c, "cp1")
    text = words(ops)
    for path in (
        "github.com/containernetworking/plugins/",
        "github.com/etcd-io/etcd/",
        "github.com/containerd/containerd/",
        "dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubelet",
    ):
        assert text.count(f"http://mirror.example/{path}") == 1, path
    sim._mkdirs("/opt/cni/bin")
    sim.apply(ops)
    assert sim.files["/var/lib/capstan/artifacts/opt_cni_bin_bridge"].data is not None  # provenance stamp
    again = plan_all(sim, c, "cp1")
    assert changed(again) == []


def test_a_missing_member_is_extracted_without_touching_the_others() -> None:
    c = cluster(artifacts={"mode": "pull"})
    sim = SimHost("w1")
    sim._mkdirs("/opt/cni/bin")
    sim.apply(plan_all(sim, c, "w1"))
    del sim.files["/usr/local/bin/ctr"]
    sim.files["/usr/local/bin/kubectl"].mode = 0o700
    ops = plan_all(sim, c, "w1")
    assert [op.note for op in ops if op.changed] == [
        "",
        "pull https://github.com/containerd/containerd/releases/download/v2.3.4/"
        "containerd-2.3.4-linux-amd64.tar.gz: /usr/local/bin/ctr",
    ]
    text = words(ops)
    assert "chmod 0755 /usr/local/bin/kubectl" in text and "dl.k8s.io" not in text
    [step] = [s for op in ops for s in op.steps if "containerd/releases" in str(s)]
    assert isinstance(step, Command) and "bin/ctr" in step.argv and "bin/containerd" not in step.argv


def test_an_unknown_sum_is_an_error_naming_the_artifact() -> None:
    art = Artifact("kubeadm", "1.99.0", "amd64", "https://x/kubeadm", "kubeadm", None)
    sim = SimHost()
    facts = sim.facts(artifacts_query([Install("kubeadm", "/usr/local/bin/kubeadm")]))
    with pytest.raises(ArtifactError, match=r"no sha256 known for kubeadm 1\.99\.0 .*extraChecksums"):
        pull_ops(facts, art, [Install("kubeadm", "/usr/local/bin/kubeadm")])


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_push_uploads_only_the_members_a_host_lacks() -> None:
    archive = tgz({"bin/containerd": b"daemon", "bin/ctr": b"client"})
    art = Artifact("containerd", "2.3.4", "amd64", "https://x/c.tgz", "c.tgz", sha(archive))
    todo = [Install("containerd", f"/usr/local/bin/{n}", f"bin/{n}") for n in ("containerd", "ctr")]
    sim = SimHost()
    facts = sim.facts(artifacts_query(todo))
    assert needs_bytes(facts, art, todo)
    ops = push_ops(facts, art, todo, archive)
    puts = {s.path: s.content for op in ops for s in op.steps if isinstance(s, PutFile)}
    assert puts["/usr/local/bin/ctr"] == b"client"
    sim.apply(ops)
    facts = sim.facts(artifacts_query(todo))
    assert not needs_bytes(facts, art, todo)  # installed sums match: nothing is read or sent again
    assert changed(push_ops(facts, art, todo, archive)) == []


def test_push_refuses_bytes_with_the_wrong_sum() -> None:
    art = Artifact("runc", "1.4.3", "amd64", "https://x/runc", "runc", sha(b"the real runc"))
    todo = [Install("runc", "/usr/local/bin/runc")]
    facts = SimHost().facts(artifacts_query(todo))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        push_ops(facts, art, todo, b"something else")


class _Files(http.server.BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        data = self.served.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.served, _Files.hits = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_verifies_caches_and_reuses(server: str, tmp_path: Path) -> None:
    data = b"binary bytes" * 1000
    _Files.served["/runc"] = data
    art = Artifact("runc", "1.4.3", "amd64", f"{server}/runc", "runc", hashlib.sha256(data).hexdigest())
    path = download(art, tmp_path)
    assert path == tmp_path / "amd64/runc/1.4.3/runc" and path.read_bytes() == data
    assert download(art, tmp_path) == path
    assert _Files.hits == ["/runc"]  # the second call used the cache


def test_download_with_a_wrong_sum_leaves_nothing_behind(server: str, tmp_path: Path) -> None:
    _Files.served["/runc"] = b"tampered"
    art = Artifact("runc", "1.4.3", "amd64", f"{server}/runc", "runc", sha(b"genuine"))
    with pytest.raises(ArtifactError, match=r"runc 1\.4\.3 from .*: sha256 mismatch"):
        download(art, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_download_of_a_missing_file_names_the_url(server: str, tmp_path: Path) -> None:
    art = Artifact("kubeadm", "1.36.4", "amd64", f"{server}/kubeadm", "kubeadm", sha(b"x"))
    with pytest.raises(
        ArtifactError, match=r"cannot download kubeadm 1\.36\.4 from http://127\.0\.0\.1:\d+/kubeadm"
    ):
        download(art, tmp_path)


def test_a_file_missing_from_the_mirror_fails_naming_host_artifact_and_url() -> None:
    from capstan.remote import FakeTransport
    from capstan.tasks.create.artifacts import apply_pull
    from capstan.tasks.session import Session

    c = cluster(artifacts={"mode": "pull", "mirror": "http://mirror.example"})
    fake = FakeTransport("w1").on(
        lambda cmd: "curl" in cmd, "", exit_code=22, stderr="curl: (22) The requested URL returned error: 404"
    )
    session = Session("unit", c, factory=lambda _c, _h: fake)
    art = pinned(c, "amd64")["kubeadm"]
    todo = [Install("kubeadm", "/usr/local/bin/kubeadm")]
    ops = pull_ops(SimHost("w1").facts(artifacts_query(todo)), art, todo)
    with pytest.raises(ArtifactError) as info:
        apply_pull(session, c.host("w1"), art, ops)
    assert str(info.value) == (
        "w1: installing kubeadm 1.36.4 from "
        "http://mirror.example/dl.k8s.io/release/v1.36.4/bin/linux/amd64/kubeadm failed "
        "(exit 22): curl: (22) The requested URL returned error: 404"
    )


def test_the_members_script_really_unpacks_once_verifies_and_stamps(tmp_path: Path) -> None:
    """Run the host side of a pull for real: sh, curl on a file:// URL, tar, sha256sum."""
    import grp
    import os
    import pwd
    import subprocess

    from capstan.ops import archive_members, stamp_path

    archive = tgz({"./bridge": b"bridge plugin", "./loopback": b"loopback plugin", "./other": b"x"})
    (tmp_path / "a.tgz").write_bytes(archive)
    dest = tmp_path / "bin"
    dest.mkdir()
    members = [("./bridge", str(dest / "bridge")), ("./loopback", str(dest / "loopback"))]
    facts = SimHost().facts(artifacts_query([Install("cni-plugins", d, m) for m, d in members]))
    op = archive_members(facts, members, archive_sha256=sha(archive), url=f"file://{tmp_path}/a.tgz")
    [step] = op.steps
    assert isinstance(step, Command) and not isinstance(step.argv, str)
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    argv = [w if w != "root" else (me if i == 7 else group) for i, w in enumerate(step.argv)]
    argv = [w.replace("/var/lib/capstan/artifacts", str(tmp_path / "stamps")) for w in argv]
    res = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert (dest / "bridge").read_bytes() == b"bridge plugin" and not (dest / "other").exists()
    stamp = tmp_path / "stamps" / stamp_path(str(dest / "loopback")).rsplit("/", 1)[-1]
    assert stamp.read_text() == f"{sha(archive)} ./loopback {sha(b'loopback plugin')}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tgz", "bin", "stamps"]  # no work dir left

    bad = [*argv[:5], "0" * 64, *argv[6:]]
    res = subprocess.run(bad, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert res.returncode != 0 and "sha256 mismatch" in res.stderr


def test_post_check_names_a_file_that_is_not_in_place_or_has_the_wrong_sum() -> None:
    from capstan.remote import FakeTransport
    from capstan.tasks.create._common import PostCheckFailed
    from capstan.tasks.create.artifacts import verify_in_place
    from capstan.tasks.session import Session

    c = cluster()
    a, b = "a" * 64, "b" * 64
    out = (
        f"/usr/local/bin/runc|regular file|755|root|{a}\n"
        f"/usr/local/bin/ctr|regular file|700|root|{b}\n"
        f"/usr/local/bin/crictl|regular file|755|root|{b}\n"
    )
    fake = FakeTransport("w1").on(lambda cmd: "sumof" in cmd, out)
    session = Session("unit", c, factory=lambda _c, _h: fake)
    verify_in_place(session, c.host("w1"), {"/usr/local/bin/runc": a, "/usr/local/bin/crictl": None})
    with pytest.raises(
        PostCheckFailed,
        match=r"w1: artifacts: not installed as wanted: /usr/local/bin/ctr, /opt/x, /usr/local/bin/runc$",
    ):
        verify_in_place(
            session,
            c.host("w1"),
            {"/usr/local/bin/ctr": None, "/opt/x": None, "/usr/local/bin/runc": b},
        )


def test_pull_scripts_record_the_sum_they_checked_for_the_post_check(tmp_path: Path) -> None:
    """Run both pull scripts for real with big files: each leaves its checked sum in the host's cache,
    so ``sumof`` (the post-check, the next run's facts) answers it from the record (a planted sum
    under the same signature is believed, so the file is not read again)."""
    import grp
    import os
    import pwd
    import subprocess

    from capstan.facts.query import SUM_FUNCTION
    from capstan.ops import archive_members, binary

    big = os.urandom(1_500_000)
    (tmp_path / "a.tgz").write_bytes(tgz({"bin/ctr": big, "bin/small": b"s"}))
    (tmp_path / "runc").write_bytes(big[::-1])
    dest = tmp_path / "bin"
    dest.mkdir()
    installs = [Install("containerd", str(dest / n), f"bin/{n}") for n in ("ctr", "small")]
    facts = SimHost().facts(artifacts_query([*installs, Install("runc", str(dest / "runc"), None)]))
    ops = [
        archive_members(
            facts, [("bin/ctr", str(dest / "ctr")), ("bin/small", str(dest / "small"))],
            archive_sha256=sha((tmp_path / "a.tgz").read_bytes()), url=f"file://{tmp_path}/a.tgz",
        ),
        binary(facts, str(dest / "runc"), sha256=sha(big[::-1]), url=f"file://{tmp_path}/runc"),
    ]  # fmt: skip
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path), "CAPSTAN_SUM_CACHE": str(state / "sums")}
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    for op in ops:
        [step] = op.steps
        assert isinstance(step, Command) and not isinstance(step.argv, str)
        argv = [w.replace("/var/lib/capstan/artifacts", str(tmp_path / "stamps")) for w in step.argv]
        owner = argv.index("root")  # owner, then group: run as whoever runs the tests
        argv[owner : owner + 2] = [me, group]
        res = subprocess.run(argv, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr

    entries = {p.name: p.read_text().splitlines() for p in (state / "sums").iterdir()}
    assert sorted(entries) == sorted(str(dest / n).replace("/", "_") for n in ("ctr", "runc"))  # big only
    assert entries[str(dest / "ctr").replace("/", "_")][1] == sha(big)
    assert entries[str(dest / "runc").replace("/", "_")][1] == sha(big[::-1])
    rec = state / "sums" / str(dest / "ctr").replace("/", "_")
    rec.write_text(f"{rec.read_text().splitlines()[0]}\n{'e' * 64}\n")
    script = SUM_FUNCTION + 'sumof "$1"'
    res = subprocess.run(["sh", "-c", script, "x", f"{dest}/ctr"], capture_output=True, text=True, env=env)
    assert res.stdout.strip() == "e" * 64
