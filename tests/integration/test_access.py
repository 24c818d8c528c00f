"""Access on the running stack: every process listens on 127.0.0.1 only, and the trainer's
state-changing endpoints answer 401 to every request without its token, train nothing, and
never write the token to their log."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import httpx
import psutil

from bottega.auth import load_trainer_token
from bottega.registry import MODEL_NAMES, MlflowRegistry
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings

from .test_trainer import notification

LOOPBACK = "127.0.0.1"


def ipv4(address: str) -> str:
    """An IPv4-mapped IPv6 address (Java's dual-stack sockets: ``::ffff:127.0.0.1``) as IPv4."""
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def listening(pid: int) -> set[tuple[str, int]]:
    """The addresses that a process and all its children listen on."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                found.add((ipv4(conn.laddr.ip), conn.laddr.port))
    return found


def test_every_running_service_listens_on_the_loopback_only(stack: LocalStack) -> None:
    checked = []
    for spec in stack.specs:
        record = stack.pid_file(spec.name).read()
        assert record is not None, f"{spec.name} is not running"
        addresses = listening(record.pid)
        ports = {port for _, port in addresses}
        assert {p.port for p in spec.ports} <= ports, (spec.name, addresses)
        assert {ip for ip, _ in addresses} == {LOOPBACK}, (spec.name, addresses)
        checked.append(spec.name)
    assert sorted(checked) == sorted(
        ["kafka", "mlflow", "alertmanager", "prometheus", "ingest", "monitor", "trainer", "serving"]
    )


def unauthorized(metrics: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("bottega_trainer_requests_total{") and 'outcome="unauthorized"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_state_changing_endpoints_refuse_every_request_without_the_token(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    url = stack_settings.trainer.url
    token = load_trainer_token(stack_settings).get_secret_value()
    registry = MlflowRegistry(stack_settings.mlflow_tracking_uri)
    name = MODEL_NAMES["fraud"]
    versions = [v.version for v in registry.versions(name)]
    runs = httpx.get(f"{url}/runs", timeout=5).json()
    before = unauthorized(httpx.get(f"{url}/metrics", timeout=5).text)

    wrong = {
        "no header": None,
        "a wrong token": "Bearer not-the-token",
        "the token less a character": f"Bearer {token[:-1]}",
        "the token and more": f"Bearer {token}x",
        "the token with no scheme": token,
        "the token as Basic": f"Basic {token}",
        "a bearer with no token": "Bearer",
    }
    bodies: dict[str, dict[str, Any]] = {
        "a firing retrain alert": {"json": notification("FeatureDriftDetected")},
        "a manual request": {"json": {"reason": "let me in"}},
        "malformed JSON": {"content": b"{", "headers": {"content-type": "application/json"}},
        "a 1 MiB body": {"content": b"[" * (1 << 20), "headers": {"content-type": "text/plain"}},
    }
    answers = []
    with httpx.Client(timeout=30) as http:
        for path in ("/webhook", "/retrain"):
            for method in ("POST", "PUT", "DELETE"):
                for what, header in wrong.items():
                    for body_name, body in bodies.items():
                        headers = dict(body.get("headers", {}))
                        if header is not None:
                            headers["Authorization"] = header
                        options = {k: v for k, v in body.items() if k != "headers"}
                        answer = http.request(method, f"{url}{path}", headers=headers, **options)
                        assert answer.status_code == 401, (method, path, what, body_name)
                        assert answer.json() == {"detail": "a valid bearer token is required"}
                        assert answer.headers["www-authenticate"] == "Bearer"
                        answers.append(answer.text)
    tried = 2 * 3 * len(wrong) * len(bodies)
    assert len(answers) == tried

    assert httpx.get(f"{url}/runs", timeout=5).json() == runs
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert unauthorized(metrics) == before + tried
    assert "bottega_trainer_running 0.0" in metrics
    assert [v.version for v in registry.versions(name)] == versions
    log = stack.log_path("trainer").read_text()
    assert token not in log and token[:-1] not in log
    # The token is readable by its owner only, and the rendered Alertmanager config points at
    # the file rather than holding the token.
    rendered = (stack_settings.home / "alertmanager" / "alertmanager.yml").read_text()
    assert token not in rendered and "credentials_file" in rendered
    assert token not in json.dumps(stack_settings.model_dump(mode="json"))


def test_no_other_service_takes_a_state_changing_request(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    """Serving's POST /predict and /predict_batch score and change nothing; the monitor's and
    the ingest's endpoints only read. Every other write is refused with a 4xx."""
    targets = {
        "serving": (stack_settings.serving.url, ("/model", "/readyz")),
        "monitor": (stack_settings.monitor.url, ("/reports", "/status", "/metrics", "/readyz")),
        "ingest": (stack_settings.ingest.url, ("/readyz", "/livez", "/nothing")),
    }
    with httpx.Client(timeout=10) as http:
        for service, (url, paths) in targets.items():
            for path in paths:
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    answer = http.request(method, f"{url}{path}", content=b"{}")
                    assert 400 <= answer.status_code < 500, (service, method, path, answer)
