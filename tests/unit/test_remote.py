"""capstan.remote without hosts: command rendering, FakeTransport, known_hosts, fan_out."""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import logging
import re
import shlex
import threading
from pathlib import Path

import pytest

from capstan.errors import CapstanError, CommandFailed, ConnectError, HostKeyError, TransportTimeout
from capstan.remote import (
    Err,
    FakeTransport,
    HostKey,
    HostsFailed,
    KnownHosts,
    Ok,
    Result,
    Transport,
    UnscriptedCommand,
    fan_out,
    fingerprint,
    known_hosts_name,
    raise_failures,
    render_command,
)
from capstan.remote.base import failed_argv, put_argv

# -- command rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "kw", "expected"),
    [
        (["echo", "a b", "$(x);y"], {}, "echo 'a b' '$(x);y'"),
        ("echo $HOME; ls", {}, "sh -c 'echo $HOME; ls'"),
        (["id"], {"sudo": True}, "sudo -n -- id"),
        (["env"], {"env": {"B": "2", "A": "x y"}}, "env 'A=x y' B=2 env"),
        ("true", {"sudo": True, "env": {"A": "1"}}, "sudo -n -- env A=1 sh -c true"),
    ],
)
def test_render_command_quotes_words_and_wraps_scripts(
    argv: list[str] | str, kw: dict, expected: str
) -> None:
    assert render_command(argv, **kw) == expected


def test_rendered_argv_round_trips_through_a_shell_parser() -> None:
    nasty = ["printf", "%s", "it's", "a\nb", "`rm -rf /`", "$HOME", "--"]
    assert shlex.split(render_command(nasty)) == nasty


@pytest.mark.parametrize("bad", [{"A B": "1"}, {"1A": "x"}, {"": "x"}])
def test_render_command_rejects_bad_env_names(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        render_command(["true"], env=bad)


def test_failed_argv_keeps_words_but_shortens_scripts_to_one_line() -> None:
    assert failed_argv(["systemctl", "restart", "kubelet"]) == ["systemctl", "restart", "kubelet"]
    summary = failed_argv(["sh", "-c", "set -e\nfor x in 1 2; do\n  echo $x\ndone", "capstan"])
    assert isinstance(summary, str) and "\n" not in summary
    assert "\n" not in str(CommandFailed("h1", failed_argv("a\n" * 200), 1, "bad"))


def test_put_argv_passes_data_as_positional_arguments() -> None:
    argv = put_argv("/etc/x y", mode=0o600, owner="etcd", group=None)
    assert argv[0:2] == ["sh", "-c"] and argv[3:] == ["capstan-put", "/etc/x y", "0600", "etcd", ""]


# -- FakeTransport -------------------------------------------------------------------------------


def test_fake_transport_satisfies_the_protocol() -> None:
    assert isinstance(FakeTransport("h1"), Transport)


def test_fake_answers_by_exact_text_regex_and_predicate_first_match_wins() -> None:
    fake = FakeTransport("h1", default=None)
    fake.on("uname -m", "x86_64\n")
    fake.on(re.compile(r"^systemctl is-active "), "active\n")
    fake.on(lambda text: text.startswith("cat"), lambda call: Result(0, f"read by {call.command}"))
    fake.on(re.compile("uname"), "never")
    assert fake.run(["uname", "-m"]).stdout == "x86_64\n"
    assert fake.run(["systemctl", "is-active", "etcd"]).stdout == "active\n"
    assert fake.run("cat /etc/hostname").stdout == "read by cat /etc/hostname"
    with pytest.raises(UnscriptedCommand, match="h1: no rule answers 'whoami'"):
        fake.run(["whoami"])
    assert fake.commands == ["uname -m", "systemctl is-active etcd", "cat /etc/hostname", "whoami"]


def test_fake_rules_with_times_run_out() -> None:
    fake = FakeTransport("h1")
    fake.on("probe", "", exit_code=1, times=2)
    assert [fake.run(["probe"], check=False).exit_code for _ in range(3)] == [1, 1, 0]


def test_fake_check_raises_command_failed_with_host_and_stderr() -> None:
    fake = FakeTransport("h1").on("false", "", exit_code=3, stderr="nope")
    with pytest.raises(CommandFailed) as info:
        fake.run(["false"])
    assert (info.value.host, info.value.exit_code, info.value.stderr) == ("h1", 3, "nope")
    assert fake.run(["false"], check=False) == Result(3, "", "nope")


def test_fake_records_flags_and_keeps_an_in_memory_filesystem() -> None:
    fake = FakeTransport("h1", files={"/etc/hostname": b"h1\n"})
    fake.run(["true"], sudo=True, env={"A": "1"}, stdin=b"in", timeout=5)
    fake.put("/etc/x", b"data", mode=0o600, owner="root", group="etcd", sudo=True)
    assert fake.get("/etc/x") == b"data" and fake.get("/etc/hostname") == b"h1\n"
    assert fake.files["/etc/x"].mode == 0o600 and fake.files["/etc/x"].group == "etcd"
    run = fake.calls[0]
    assert (run.sudo, run.env, run.stdin, run.timeout) == (True, {"A": "1"}, b"in", 5)
    assert [c.kind for c in fake.calls] == ["run", "put", "get", "get"]
    with pytest.raises(CommandFailed, match="No such file"):
        fake.get("/missing")


def test_fake_can_fail_like_an_unreachable_host() -> None:
    fake = FakeTransport("h1").fail_next(TransportTimeout("h1", "slow"), times=1)
    with pytest.raises(TransportTimeout):
        fake.run(["true"])
    assert fake.run(["true"]).ok
    fake.go_down()
    with pytest.raises(ConnectError, match="h1"):
        fake.put("/x", b"")
    fake.come_back()
    assert fake.run(["true"]).ok


# -- known_hosts ---------------------------------------------------------------------------------

BLOB_A = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"A" * 32).decode()
BLOB_B = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"B" * 32).decode()


def test_known_hosts_name_uses_brackets_for_non_default_ports() -> None:
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_fingerprint_matches_openssh_format() -> None:
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(BLOB_A)).digest()).decode().rstrip("=")
    assert fingerprint(BLOB_A) == f"SHA256:{digest}"


def test_first_contact_records_the_key_and_logs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = KnownHosts(tmp_path / "state" / "known_hosts")
    key = HostKey("ssh-ed25519", BLOB_A)
    with caplog.at_level(logging.INFO, logger="capstan.remote"):
        assert store.verify_or_record("[10.0.0.1]:22", key, label="node1") is True
    assert f"recorded host key for node1 (ssh-ed25519 {fingerprint(BLOB_A)})" in caplog.text
    assert store.lookup("[10.0.0.1]:22") == [key]
    assert store.verify_or_record("[10.0.0.1]:22", key) is False


def test_a_changed_key_is_refused_and_never_added(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("# my comment\n10.0.0.1 ssh-ed25519 " + BLOB_A + "\n")
    store = KnownHosts(path)
    with pytest.raises(HostKeyError) as info:
        store.verify_or_record("10.0.0.1", HostKey("ssh-ed25519", BLOB_B), label="node1")
    assert info.value.host == "node1" and "host key changed" in str(info.value)
    with pytest.raises(HostKeyError):  # another key type for a known host is refused too
        store.verify_or_record("10.0.0.1", HostKey("ssh-rsa", BLOB_B))
    assert path.read_text() == "# my comment\n10.0.0.1 ssh-ed25519 " + BLOB_A + "\n"


def test_hashed_and_comma_separated_entries_match(tmp_path: Path) -> None:
    salt = b"0123456789abcdefghij"
    mac = hmac.new(salt, b"node9", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"
    path = tmp_path / "known_hosts"
    path.write_text(
        f"{hashed} ssh-ed25519 {BLOB_A}\nalpha,beta ssh-ed25519 {BLOB_B}\n@revoked * ssh-rsa AAAA\n"
    )
    store = KnownHosts(path)
    assert store.lookup("node9") == [HostKey("ssh-ed25519", BLOB_A)]
    assert store.lookup("beta") == [HostKey("ssh-ed25519", BLOB_B)]
    assert store.lookup("gamma") == []


def test_parallel_first_contacts_all_land_in_the_file(tmp_path: Path) -> None:
    store = KnownHosts(tmp_path / "known_hosts")
    barrier = threading.Barrier(20)

    def record(i: int) -> None:
        barrier.wait(timeout=10)
        KnownHosts(store.path).verify_or_record(f"h{i}", HostKey("ssh-ed25519", BLOB_A))

    threads = [threading.Thread(target=record, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = store.path.read_text().splitlines()
    assert sorted(lines) == sorted(f"h{i} ssh-ed25519 {BLOB_A}" for i in range(20))


# -- fan_out -------------------------------------------------------------------------------------


def test_fan_out_keeps_host_order_and_every_outcome() -> None:
    hosts = [FakeTransport(f"h{i}") for i in range(5)]
    hosts[2].go_down()
    results = fan_out(lambda t: t.run(["hostname"]).exit_code, hosts)
    assert list(results) == ["h0", "h1", "h2", "h3", "h4"]
    assert results["h0"] == Ok(0) and results["h4"] == Ok(0)
    assert isinstance(results["h2"], Err) and isinstance(results["h2"].error, ConnectError)
    assert all(len(h.calls) == 1 for h in hosts), "a failure does not stop the others"


def test_raise_failures_names_every_failed_host_and_says_if_retryable() -> None:
    hosts = [FakeTransport("a"), FakeTransport("b").go_down(), FakeTransport("c").on("x", "", exit_code=2)]
    results = fan_out(lambda t: t.run(["x"]).stdout, hosts)
    with pytest.raises(HostsFailed) as info:
        raise_failures(results, "gather facts")
    msg = str(info.value)
    assert (
        "gather facts failed on 2 of 3 hosts (b, c)" in msg
        and "b: no route" in msg
        and "c: `x` exited 2" in msg
    )
    assert set(info.value.errors) == {"b", "c"} and info.value.retryable is False
    only_transport = fan_out(lambda t: t.run(["x"]), [FakeTransport("b").go_down()])
    with pytest.raises(HostsFailed) as again:
        raise_failures(only_transport)
    assert again.value.retryable is True
    assert raise_failures(fan_out(lambda t: t.host.upper(), [FakeTransport("a")])) == {"a": "A"}


def test_fan_out_runs_at_most_limit_at_once_and_really_in_parallel() -> None:
    lock, active, peak = threading.Lock(), [0], [0]
    barrier = threading.Barrier(3)

    def work(i: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        barrier.wait(timeout=10)  # only passes if 3 calls run at the same time
        with lock:
            active[0] -= 1
        return i * i

    results = fan_out(work, list(range(9)), limit=3, name=str)
    assert peak[0] == 3
    assert [r.value for r in results.values() if isinstance(r, Ok)] == [i * i for i in range(9)]


def test_fan_out_carries_context_variables_into_worker_threads() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("flow-run-1")
    results = fan_out(lambda _h: var.get(), ["a", "b"], name=str)
    assert results == {"a": Ok("flow-run-1"), "b": Ok("flow-run-1")}


def test_fan_out_rejects_duplicate_names_and_handles_no_hosts() -> None:
    with pytest.raises(CapstanError, match="duplicate host names h1"):
        fan_out(lambda h: h, [FakeTransport("h1"), FakeTransport("h1")])
    assert fan_out(lambda h: h, []) == {}


def test_fan_out_does_not_swallow_keyboard_interrupt() -> None:
    def interrupt(_h: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fan_out(interrupt, ["a"], name=str)
