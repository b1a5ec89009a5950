"""The pure rules of etcd backup and restore: names, retention, what etcdctl prints, command lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from capstan.errors import CapstanError
from capstan.tasks.etcd.model import (
    LIST_SCRIPT,
    MemberHealth,
    SnapshotError,
    choose_member,
    decode_note,
    encode_note,
    etcdctl_argv,
    is_snapshot_name,
    membership_problems,
    new_cluster_token,
    newest,
    parse_env_file,
    parse_listing,
    parse_member_health,
    parse_member_list,
    parse_sha256_file,
    parse_snapshot_status,
    restore_argv,
    retention_victims,
    sha256_line,
    snapshot_name,
    snapshot_time,
    snapshot_tool,
    status_argv,
)
from capstan.tasks.etcd.offhost import parse_destination

T0 = datetime(2026, 11, 29, 2, 0, 0, tzinfo=UTC)
SHA = "ab" * 32


def names(n: int, start: datetime = T0) -> list[str]:
    return [snapshot_name(start + timedelta(days=i)) for i in range(n)]


# ---- names -----------------------------------------------------------------------------------------


def test_snapshot_names_are_utc_and_round_trip() -> None:
    cet = timezone(timedelta(hours=1))
    assert snapshot_name(datetime(2026, 11, 29, 3, 0, 0, tzinfo=cet)) == "etcd-20261129T020000Z"
    assert snapshot_time("etcd-20261129T020000Z") == T0
    with pytest.raises(ValueError):
        snapshot_name(datetime(2026, 11, 29))  # naive: ambiguous


@pytest.mark.parametrize(
    "name",
    [
        "etcd-2026-11-29_02:00:00",
        "etcd-20261329T020000Z",
        "backup-20261129T020000Z",
        "etcd-20261129T020000Z.old",
        "",
    ],
)
def test_foreign_names_are_not_ours(name: str) -> None:
    assert not is_snapshot_name(name)


def test_names_sort_in_time_order_and_newest_ignores_foreign_entries() -> None:
    ns = names(3)
    assert sorted(reversed(ns)) == ns
    assert newest([ns[1], "lost+found", ns[2], ns[0]]) == ns[2]
    assert newest(["lost+found"]) is None


def test_restore_token_is_new_per_restore_and_never_the_create_token() -> None:
    a, b = new_cluster_token("prod", T0), new_cluster_token("prod", T0 + timedelta(seconds=1))
    assert a != b and a != "prod-etcd" and a.startswith("prod-etcd-restore-")


# ---- retention -------------------------------------------------------------------------------------


def test_retention_keeps_the_newest_n_complete() -> None:
    ns = names(5)
    assert retention_victims(ns, [], 2) == ns[:3]
    assert retention_victims(ns, [], 5) == []
    assert retention_victims(ns, [], 9) == []


def test_retention_order_does_not_depend_on_listing_order() -> None:
    ns = names(4)
    assert retention_victims([ns[2], ns[0], ns[3], ns[1]], [], 1) == ns[:3]


def test_retention_removes_partial_leftovers_but_never_the_current_run_or_foreign_dirs() -> None:
    ns = names(4)
    complete, partial = ns[:3], [ns[3], "etcd-manual-copy"]
    assert retention_victims(complete, partial, 3) == [ns[3]]
    assert retention_victims(complete, partial, 3, protect=ns[3]) == []
    assert retention_victims([*complete, "lost+found"], [], 1) == ns[:2]


def test_retention_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        retention_victims(names(2), [], 0)


# ---- etcdctl output --------------------------------------------------------------------------------


def test_snapshot_status_parses_the_last_json_line() -> None:
    text = 'some log line\n{"hash":168901199,"revision":2,"totalKey":5,"totalSize":20480}\n'
    st = parse_snapshot_status(text, "cp1:/s.db")
    assert (st.hash, st.revision, st.total_keys, st.total_size) == (168901199, 2, 5, 20480)


@pytest.mark.parametrize(
    "text",
    ["", "Error: invalid database", '{"hash":1}', '{"hash":1,"revision":3,"totalKey":2,"totalSize":0}', "[]"],
)
def test_snapshot_status_that_is_missing_or_implausible_is_refused_naming_the_file(text: str) -> None:
    with pytest.raises(SnapshotError, match=r"^cp2:/var/x\.db: "):
        parse_snapshot_status(text, "cp2:/var/x.db")


def test_member_health_healthy_follower_and_leader() -> None:
    health = '[{"endpoint":"https://127.0.0.1:2379","health":true,"took":"2ms"}]'
    status = {"header": {"member_id": 7, "revision": 42}, "leader": 9}
    follower = parse_member_health(health, json.dumps([{"Endpoint": "x", "Status": status}]))
    assert follower == MemberHealth(True, "", 7, False, 42)
    leader = parse_member_health(health, json.dumps([{"Status": {**status, "leader": 7}}]))
    assert leader.leader and leader.healthy


def test_member_health_unhealthy_keeps_etcds_reason() -> None:
    health = '[{"endpoint":"e","health":false,"took":"5s","error":"context deadline exceeded"}]'
    assert parse_member_health(health, "") == MemberHealth(False, "context deadline exceeded")
    assert not parse_member_health("", "").healthy


def test_choose_member_prefers_a_healthy_follower_in_spec_order() -> None:
    leader, follower = MemberHealth(True, leader=True), MemberHealth(True)
    sick = MemberHealth(False, "down")
    assert choose_member([("cp1", leader), ("cp2", sick), ("cp3", follower)]) == "cp3"
    assert choose_member([("cp1", sick), ("cp2", leader), ("cp3", sick)]) == "cp2"
    assert choose_member([("cp1", sick), ("cp2", sick)]) is None


def test_member_list_and_membership_problems() -> None:
    text = json.dumps(
        {
            "members": [
                {"name": "cp1", "peerURLs": ["https://10.0.0.1:2380"]},
                {"peerURLs": ["https://10.0.0.9:2380"]},
            ]
        }
    )
    seen = parse_member_list(text)
    want = {"cp1": "https://10.0.0.1:2380", "cp2": "https://10.0.0.2:2380"}
    assert membership_problems(seen, want) == ["cp2 is missing", "unexpected member (unstarted)"]
    assert membership_problems({"cp1": ["https://10.0.0.1:2380"]}, {"cp1": "https://10.0.0.1:2380"}) == []
    assert membership_problems({"cp1": ["https://10.0.0.5:2380"]}, {"cp1": "https://10.0.0.1:2380"}) == [
        "cp1 has peer URLs https://10.0.0.5:2380, expected https://10.0.0.1:2380"
    ]
    with pytest.raises(SnapshotError):
        parse_member_list("Error: context deadline exceeded")


# ---- files -----------------------------------------------------------------------------------------


def test_sha256_file_round_trip_in_sha256sum_format() -> None:
    line = sha256_line(SHA)
    assert line == f"{SHA}  snapshot.db\n"
    assert parse_sha256_file(line, "x") == SHA
    assert parse_sha256_file(SHA.upper(), "x") == SHA
    with pytest.raises(SnapshotError, match=r"^cp1:/a\.sha256: "):
        parse_sha256_file("not-a-digest  snapshot.db", "cp1:/a.sha256")
    with pytest.raises(ValueError):
        sha256_line("abc")


def test_listing_parse_complete_partial_and_noise() -> None:
    a, b, c = names(3)
    meta = json.dumps({"revision": 101, "keys": 10006})
    text = "\n".join(
        [
            f"complete\t{a}\t892960\t{SHA}\t{meta}",
            f"partial\t{b}",
            f"complete\t{c}\t10\t{SHA}\t",
            f"complete\tetcd-foreign\t10\t{SHA}\t",
            "garbage",
        ]
    )
    found = parse_listing(text)
    assert [(s.name, s.complete, s.size) for s in found] == [(a, True, 892960), (b, False, 0), (c, True, 10)]
    assert found[0].meta == {"revision": 101, "keys": 10006} and found[0].sha256 == SHA
    assert "snapshot.db.sha256" in LIST_SCRIPT  # completeness is decided by the checksum file


def test_env_file_parse() -> None:
    text = "# comment\nETCD_NAME=cp1\n\nETCD_DATA_DIR='/var/lib/etcd'\nBROKEN\n"
    assert parse_env_file(text) == {"ETCD_NAME": "cp1", "ETCD_DATA_DIR": "/var/lib/etcd"}


# ---- command lines ---------------------------------------------------------------------------------


def test_etcdctl_talks_to_the_local_member_only_with_the_admin_client_certificate() -> None:
    argv = etcdctl_argv("endpoint", "health", "-w", "json")
    assert argv[0] == "etcdctl" and argv[-4:] == ["endpoint", "health", "-w", "json"]
    assert "--endpoints=https://127.0.0.1:2379" in argv
    assert "--cert=/etc/ssl/etcd/etcdctl.crt" in argv and "--key=/etc/ssl/etcd/etcdctl.key" in argv
    assert "--cacert=/etc/ssl/etcd/ca.crt" in argv
    assert "--command-timeout=10s" in argv


def test_snapshot_save_gets_a_long_command_timeout() -> None:
    # etcdctl's --command-timeout bounds `snapshot save`'s whole download (checked with etcd 3.4)
    argv = etcdctl_argv(command_timeout=1800)
    assert "--command-timeout=1800s" in argv and "--command-timeout=10s" not in argv


def test_snapshot_tool_prefers_etcdutl() -> None:
    assert snapshot_tool("/usr/local/bin/etcdutl") == "etcdutl"
    assert snapshot_tool("/usr/local/bin/etcdctl") == "etcdctl"
    assert status_argv("etcdutl", "/b/s.db") == ["etcdutl", "snapshot", "status", "/b/s.db", "-w", "json"]


def test_restore_command_line() -> None:
    argv = restore_argv(
        "etcdctl",
        "/var/backups/etcd/etcd-20261129T020000Z/snapshot.db",
        name="cp2",
        initial_cluster="cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380,cp3=https://10.0.0.3:2380",
        token="prod-etcd-restore-20261129t020000z",
        peer="https://10.0.0.2:2380",
        data_dir="/var/lib/etcd.restore-20261129T020000Z",
    )
    assert argv == [
        "etcdctl",
        "snapshot",
        "restore",
        "/var/backups/etcd/etcd-20261129T020000Z/snapshot.db",
        "--name=cp2",
        "--initial-cluster=cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380,cp3=https://10.0.0.3:2380",
        "--initial-cluster-token=prod-etcd-restore-20261129t020000z",
        "--initial-advertise-peer-urls=https://10.0.0.2:2380",
        "--data-dir=/var/lib/etcd.restore-20261129T020000Z",
    ]


def test_notes_round_trip_and_tolerate_plain_text() -> None:
    data = {"path": "/x", "revision": 3, "copied": True}
    assert decode_note(encode_note(data)) == data
    assert decode_note("") == {} and decode_note("a plain note") == {} and decode_note("[1]") == {}


# ---- destinations ----------------------------------------------------------------------------------


def test_destinations() -> None:
    assert parse_destination("/srv/etcd").kind == "dir"
    block = parse_destination("block:local-file-system/etcd-backups")
    assert (block.kind, block.where, block.label) == (
        "block",
        "local-file-system/etcd-backups",
        "block:local-file-system/etcd-backups",
    )
    with pytest.raises(CapstanError, match=r"^spec\.etcd\.backup\.destination: 'relative/dir'"):
        parse_destination("relative/dir")
    with pytest.raises(CapstanError, match=r"^destination: 'block:Local/x'"):
        parse_destination("block:Local/x", "destination")
    with pytest.raises(CapstanError):
        parse_destination("block:no-name")
