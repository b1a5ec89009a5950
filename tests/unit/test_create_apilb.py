"""api-lb phase planning: haproxy/nginx under capstan's unit, keepalived for a VIP, nothing if external."""

from __future__ import annotations

import pytest
from test_create_support import SimHost, changed, cluster, words

from capstan.errors import PlanError
from capstan.facts import FactsQuery, Listener
from capstan.ops import Op
from capstan.plan.phases import create_plan
from capstan.render import RenderedFile, new_secrets, render_host
from capstan.spec.models import Cluster
from capstan.tasks.create.apilb import balancer, lb_files, lb_plan, lb_query, listening

SECRETS = new_secrets()


def files_for(c: Cluster, host: str) -> dict[str, RenderedFile]:
    return lb_files(balancer(c), render_host(c, host, SECRETS, ca_cert_hash="sha256:" + "0" * 64))


def plan(sim: SimHost, c: Cluster, host: str = "w1") -> list[Op]:
    b = balancer(c)
    files = files_for(c, host)
    return lb_plan(sim.facts(lb_query(b, files)), b, files)


def with_packages(*names: str) -> SimHost:
    sim = SimHost("w1")
    sim.packages.update(dict.fromkeys(names, "1.0"))
    return sim


def test_haproxy_runs_from_capstans_unit_and_config_dir_then_converges() -> None:
    c = cluster()
    files = files_for(c, "w1")
    assert sorted(files) == ["/etc/kube-lb/haproxy.cfg", "/etc/systemd/system/kube-apiserver-lb.service"]
    cfg = files["/etc/kube-lb/haproxy.cfg"].text
    assert "bind 127.0.0.1:6444" in cfg
    assert [line.split()[1] for line in cfg.splitlines() if line.strip().startswith("server ")] == [
        "cp1",
        "cp2",
        "cp3",
    ]
    sim = with_packages("haproxy")
    ops = plan(sim, c)
    text = words(ops)
    assert "apt-get" not in text
    assert "install -d -m 0755 /etc/kube-lb /var/lib/capstan/applied" in text
    assert (
        "systemctl enable kube-apiserver-lb.service" in text
        and "systemctl start kube-apiserver-lb.service" in text
    )
    sim.apply(ops)
    assert changed(plan(sim, c)) == [] and sim.restarts == []


def test_a_missing_package_is_installed_first() -> None:
    c = cluster()
    ops = plan(with_packages(), c)
    assert changed(ops)[0] == "packages haproxy"
    assert "haproxy" in str(ops[0].steps[0])


def test_a_changed_backend_list_restarts_the_balancer() -> None:
    c = cluster()
    sim = with_packages("haproxy")
    sim.apply(plan(sim, c))
    other_port = cluster(kubernetes={"version": "1.36.4", "apiserverPort": 8443})
    ops = plan(sim, other_port)
    assert changed(ops) == [
        "file /etc/kube-lb/haproxy.cfg",
        "service kube-apiserver-lb.service enabled running",
        "record of the configuration kube-apiserver-lb.service runs with",
    ]
    assert "systemctl restart kube-apiserver-lb.service" in words(ops)


def test_nginx_needs_its_stream_module_package() -> None:
    c = cluster(controlPlaneEndpoint={"localLb": "nginx"})
    ops = plan(with_packages("nginx"), c)
    assert changed(ops)[0] == "packages nginx libnginx-mod-stream"
    assert "missing: libnginx-mod-stream" in ops[0].note
    assert "/etc/kube-lb/nginx.conf" in words(ops)


def test_vip_mode_runs_keepalived_with_its_packaged_unit_on_control_planes() -> None:
    c = cluster(controlPlaneEndpoint={"mode": "vip", "address": "10.0.0.100"})
    assert [p.hosts for p in create_plan(c) if p.phase.id == "api-lb"] == [("cp1", "cp2", "cp3")]
    files = files_for(c, "cp1")
    assert list(files) == ["/etc/keepalived/keepalived.conf"]
    sim = with_packages("keepalived")
    ops = plan(sim, c, "cp1")
    text = words(ops)
    assert "put /etc/keepalived/keepalived.conf" in text and "systemctl start keepalived.service" in text
    assert "/etc/systemd/system/" not in text
    sim.apply(ops)
    assert changed(plan(sim, c, "cp1")) == []


def test_external_endpoint_runs_nothing() -> None:
    c = cluster(controlPlaneEndpoint={"mode": "external", "address": "lb.example", "port": 6443})
    assert [p.hosts for p in create_plan(c) if p.phase.id == "api-lb"] == [()]
    with pytest.raises(PlanError, match="runs nothing"):
        balancer(c)


def test_listening_means_loopback_or_any_on_the_port() -> None:
    sim = SimHost()
    sim.listeners = [Listener(address="127.0.0.1", port=6444), Listener(address="10.0.0.21", port=7000)]
    facts = sim.facts(FactsQuery(binaries=()))
    assert listening(facts, 6444) and not listening(facts, 7000) and not listening(facts, 6443)
