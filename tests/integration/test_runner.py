"""The stack runner's process rules, on small real processes."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import psutil
import pytest

from bottega.errors import PortInUse, ServiceStartError
from bottega.stack.health import http_ok
from bottega.stack.process import PidFile, PidRecord
from bottega.stack.runner import LocalStack
from bottega.stack.spec import Port, ServiceSpec

from .conftest import free_ports


def web(name: str, port: int, *deps: str) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        command=lambda: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ports=(Port(name, port),),
        health=lambda: http_ok(f"http://127.0.0.1:{port}/"),
        url=f"http://127.0.0.1:{port}",
        depends_on=deps,
        startup_timeout_s=30,
        stop_timeout_s=5,
    )


def crashing(name: str, *deps: str) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        command=lambda: [
            sys.executable,
            "-c",
            "import sys; print('boom: bad config'); sys.exit(3)",
        ],
        ports=(),
        health=lambda: False,
        url="",
        depends_on=deps,
        startup_timeout_s=30,
    )


def stack_of(tmp_path: Path, *specs: ServiceSpec) -> LocalStack:
    return LocalStack(
        specs, home=tmp_path, bind_host="127.0.0.1", cwd=tmp_path, poll_interval_s=0.05
    )


def test_up_down_writes_and_removes_pid_files_and_logs(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    stack = stack_of(tmp_path, web("b", p2, "a"), web("a", p1))
    report = stack.up()
    try:
        assert report.started == ["a", "b"]
        pids = {name: stack.pid_file(name).read() for name in ("a", "b")}
        assert all(record and psutil.pid_exists(record.pid) for record in pids.values())
        assert [row.state for row in stack.status()] == ["healthy", "healthy"]
        assert stack.log_path("a").exists()
        again = stack.up()
        assert again.started == [] and again.already_running == ["a", "b"]
        assert {n: stack.pid_file(n).read() for n in ("a", "b")} == pids
    finally:
        stopped = stack.down()
    assert stopped == ["b", "a"]
    for record in pids.values():
        assert record is not None and not psutil.pid_exists(record.pid)
    assert not list((tmp_path / "run").glob("*.pid"))
    assert [row.state for row in stack.status()] == ["stopped", "stopped"]


def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", p2))
        squatter.listen()
        stack = stack_of(tmp_path, web("a", p1), web("b", p2))
        with pytest.raises(PortInUse, match=f"port {p2}") as info:
            stack.up()
    assert info.value.service == "b"
    assert not list((tmp_path / "run").glob("*.pid"))
    assert [row.state for row in stack.status()] == ["stopped", "stopped"]


def test_a_service_that_dies_rolls_back_what_this_call_started(tmp_path: Path) -> None:
    (p1,) = free_ports(1)
    stack = stack_of(tmp_path, web("a", p1), crashing("b", "a"))
    with pytest.raises(ServiceStartError, match="b exited while starting") as info:
        stack.up()
    assert "boom: bad config" in str(info.value.hint)
    assert [row.state for row in stack.status()] == ["stopped", "stopped"]
    assert not http_ok(f"http://127.0.0.1:{p1}/", timeout_s=0.5)


def test_a_service_that_stays_unhealthy_times_out_and_rolls_back(tmp_path: Path) -> None:
    (p1,) = free_ports(1)
    sleeper = ServiceSpec(
        name="sleeper",
        command=lambda: [sys.executable, "-c", "import time; time.sleep(60)"],
        ports=(),
        health=lambda: False,
        url="",
        startup_timeout_s=1,
        stop_timeout_s=5,
    )
    stack = stack_of(tmp_path, web("a", p1), sleeper)
    with pytest.raises(ServiceStartError, match="did not become healthy within 1s"):
        stack.up()
    assert [row.state for row in stack.status()] == ["stopped", "stopped"]


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    me = psutil.Process(os.getpid())
    record = PidRecord(pid=me.pid, create_time=me.create_time() - 3600, command=["x"], log_path="x")
    pid_file = PidFile(tmp_path / "run" / "ghost.pid")
    pid_file.write(record)
    assert pid_file.live() is None
    stack = stack_of(tmp_path, crashing("ghost"))
    assert stack.down() == []  # and this test process is still alive to assert it
    assert not pid_file.path.exists()


def test_a_crashed_service_is_restarted_by_the_next_up(tmp_path: Path) -> None:
    (p1,) = free_ports(1)
    stack = stack_of(tmp_path, web("a", p1))
    stack.up()
    try:
        first = stack.pid_file("a").read()
        assert first is not None
        psutil.Process(first.pid).kill()
        psutil.Process(first.pid).wait(timeout=5)
        assert [row.state for row in stack.status()] == ["stopped"]
        report = stack.up()
        assert report.started == ["a"]
        second = stack.pid_file("a").read()
        assert second is not None and second.pid != first.pid
    finally:
        stack.down()


def test_a_dependency_is_ready_and_set_up_before_its_dependent_starts(tmp_path: Path) -> None:
    p1, p2 = free_ports(2)
    marker = tmp_path / "topics-created"
    base = web("broker", p1)
    broker = ServiceSpec(
        name=base.name,
        command=base.command,
        ports=base.ports,
        health=base.health,
        url=base.url,
        after_start=marker.touch,
        startup_timeout_s=30,
        stop_timeout_s=5,
    )
    # The dependent refuses to start unless the broker's after-start hook already ran.
    code = (
        f"import os, sys, runpy; os.path.exists({str(marker)!r}) or sys.exit(3); "
        f"sys.argv = ['http.server', '{p2}', '--bind', '127.0.0.1']; "
        "runpy.run_module('http.server', run_name='__main__')"
    )
    consumer = ServiceSpec(
        name="consumer",
        command=lambda: [sys.executable, "-c", code],
        ports=(Port("c", p2),),
        health=lambda: http_ok(f"http://127.0.0.1:{p2}/"),
        url="",
        depends_on=("broker",),
        startup_timeout_s=30,
        stop_timeout_s=5,
    )
    stack = stack_of(tmp_path, consumer, broker)
    try:
        assert stack.up().started == ["broker", "consumer"]
        assert [row.state for row in stack.status()] == ["healthy", "healthy"]
    finally:
        stack.down()


def test_kafka_storage_formats_with_a_cluster_id_that_starts_with_a_dash(
    tmp_path: Path, project_root: Path
) -> None:
    from bottega.stack import services
    from bottega.stack.settings import StackSettings

    project = StackSettings(project_root=project_root)  # type: ignore[call-arg]
    settings = StackSettings(  # type: ignore[call-arg]
        project_root=project_root,
        home=tmp_path,
        bind_host="127.0.0.1",
        kafka={"port": free_ports(1)[0], "controller_port": free_ports(1)[0]},
        stack=project.stack.model_copy(update={"kafka_libs_dir": project.kafka_libs_dir}),
    )
    # One fresh cluster id in 64 starts with "-", as this one does.
    spec = services.kafka_service(settings, cluster_id=lambda: "-AAAAAAAAAAAAAAAAAAAAA")
    assert spec.prepare is not None
    spec.prepare()
    meta = (tmp_path / "kafka").rglob("meta.properties")
    assert any("cluster.id=-" in path.read_text() for path in meta)


def forking_web(name: str, port: int, *, own_session: bool) -> ServiceSpec:
    """A service whose server is a child process: in the parent's group, where only the
    runner's clean-up can reach it, or in a session of its own (as BentoML's workers are),
    where it asks to go with its parent."""
    watch = "from bottega.stack.process import exit_with_parent; exit_with_parent(); "
    child = (
        (watch if own_session else "")
        + f"import runpy, sys; sys.argv = ['http.server', '{port}', '--bind', '127.0.0.1']; "
        + "runpy.run_module('http.server', run_name='__main__')"
    )
    session = "True" if own_session else "False"
    parent = (
        "import subprocess, sys; "
        f"subprocess.run([sys.executable, '-c', {child!r}], start_new_session={session})"
    )
    return ServiceSpec(
        name=name,
        command=lambda: [sys.executable, "-c", parent],
        ports=(Port(name, port),),
        health=lambda: http_ok(f"http://127.0.0.1:{port}/"),
        url=f"http://127.0.0.1:{port}",
        env={"PYTHONPATH": os.pathsep.join(sys.path)},
        startup_timeout_s=30,
        stop_timeout_s=5,
    )


@pytest.mark.parametrize("own_session", [False, True])
def test_a_service_killed_with_sigkill_leaves_nothing_on_its_port(
    tmp_path: Path, own_session: bool
) -> None:
    (port,) = free_ports(1)
    stack = stack_of(tmp_path, forking_web("a", port, own_session=own_session))
    stack.up()
    try:
        first = stack.pid_file("a").read()
        assert first is not None
        parent = psutil.Process(first.pid)
        (server,) = parent.children()
        parent.kill()
        parent.wait(timeout=5)
        if own_session:
            # Out of the group's reach: it goes by itself, with its parent.
            psutil.wait_procs([server], timeout=10)
            assert not server.is_running()
        report = stack.up()
        assert report.started == ["a"]
        assert not server.is_running()
        assert http_ok(f"http://127.0.0.1:{port}/")
    finally:
        stack.down()
