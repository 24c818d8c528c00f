"""Bad HTTP input to every service of the running stack: malformed, oversize, wrongly typed and
non-UTF-8 bodies, unknown paths and methods, bytes that are not HTTP at all, and schemathesis
fuzzing of the trainer's and the monitor's OpenAPI schemas. Each gets a 4xx, never a 5xx or a
traceback. (The model server's schema is fuzzed in ``test_serving_contract``.)"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from bottega.auth import load_trainer_token
from bottega.settings import BottegaSettings
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings

from .conftest import free_ports, service_env, service_process

JSON = {"content-type": "application/json"}
TOKEN = "fuzz-token-0123456789abcdef0123456789"

# Each bad request: (what it is, method, path, httpx options).
Bad = tuple[str, str, str, dict[str, Any]]


def bodies(path: str, limit: int, *, optional: bool = False) -> list[Bad]:
    """The bad bodies every JSON endpoint is sent; with ``optional``, the endpoint takes no body
    or JSON null as a request with the defaults, so those are not bad."""
    nothing: list[Bad] = [
        ("an empty body", "POST", path, {"content": b"", "headers": JSON}),
        ("JSON null", "POST", path, {"content": b"null", "headers": JSON}),
    ]
    return [
        *([] if optional else nothing),
        ("malformed JSON", "POST", path, {"content": b'{"amount": ', "headers": JSON}),
        ("a JSON array", "POST", path, {"content": b"[1, 2, 3]", "headers": JSON}),
        ("a JSON string", "POST", path, {"content": b'"hello"', "headers": JSON}),
        ("non-UTF-8 bytes", "POST", path, {"content": b"\xff\xfe\x00\x81", "headers": JSON}),
        (
            "deeply nested JSON",
            "POST",
            path,
            {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON},
        ),
        ("a form body", "POST", path, {"data": {"a": "1"}}),
        (
            "text/plain JSON",
            "POST",
            path,
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
        ),
        ("XML", "POST", path, {"content": b"<a/>", "headers": {"content-type": "text/xml"}}),
        ("an oversize body", "POST", path, {"content": b" " * (limit + 1), "headers": JSON}),
    ]


def common(url_paths: tuple[str, ...]) -> list[Bad]:
    """Unknown paths, wrong methods and odd path parameters."""
    return [
        ("an unknown path", "GET", "/no/such/thing", {}),
        ("a traversal path", "GET", "/reports/..%2F..%2Fetc%2Fpasswd", {}),
        ("a 10 kB path", "GET", "/" + "a" * 10_000, {}),
        *(("a wrong method", "PATCH", p, {}) for p in url_paths),
    ]


def check_all(url: str, requests: list[Bad], auth: dict[str, str] | None = None) -> list[str]:
    seen = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for what, method, path, options in requests:
            headers = {**(auth or {}), **options.pop("headers", {})}
            answer = http.request(method, path, headers=headers, **options)
            assert 400 <= answer.status_code < 500, (url, what, answer.status_code, answer.text)
            assert "Traceback" not in answer.text, (url, what)
            seen.append(f"{what}: {answer.status_code}")
    return seen


def test_the_model_server_refuses_bad_bodies_with_a_4xx(
    stack_settings: StackSettings, stack: LocalStack
) -> None:
    url = stack_settings.serving.url
    limit = 64 * 1024
    requests = [
        *bodies("/predict", limit),
        *bodies("/predict_batch", limit),
        ("a batch of one bad item", "POST", "/predict_batch", {"json": {"transactions": [{}]}}),
        ("a huge amount", "POST", "/predict", {"content": b'{"amount": 1e400}', "headers": JSON}),
        *common(("/predict", "/model")),
    ]
    seen = check_all(url, requests)
    assert len(seen) == len(requests)


def test_the_trainer_refuses_bad_bodies_with_a_4xx_even_with_the_token(
    stack_settings: StackSettings, stack: LocalStack
) -> None:
    url = stack_settings.trainer.url
    auth = {"Authorization": f"Bearer {load_trainer_token(stack_settings).get_secret_value()}"}
    runs = httpx.get(f"{url}/runs", timeout=5).json()
    limit = 1024 * 1024
    requests = [
        *bodies("/webhook", limit),
        *bodies("/retrain", limit, optional=True),
        ("alerts not a list", "POST", "/webhook", {"json": {"alerts": "all of them"}}),
        ("an alert without labels", "POST", "/webhook", {"json": {"alerts": [{}]}}),
        ("a reason that is a number", "POST", "/retrain", {"json": {"reason": 5}}),
        ("an unknown run", "GET", f"/runs/{uuid.uuid4()}", {}),
        *common(("/webhook", "/runs")),
    ]
    check_all(url, requests, auth)
    assert httpx.get(f"{url}/runs", timeout=5).json() == runs


def test_the_monitor_and_the_ingest_refuse_bad_requests_with_a_4xx(
    stack_settings: StackSettings, stack: LocalStack
) -> None:
    check_all(
        stack_settings.monitor.url,
        [
            ("a report that does not exist", "GET", "/reports/nope", {}),
            ("a report name with dots", "GET", "/reports/..", {}),
            ("a posted body", "POST", "/reports", {"content": b"\xff", "headers": JSON}),
            *common(("/reports", "/status")),
        ],
    )
    check_all(
        stack_settings.ingest.url,
        [
            ("a posted body", "POST", "/metrics", {"content": b"\xff", "headers": JSON}),
            ("an unknown path", "GET", "/no/such/thing", {}),
            ("a wrong method", "DELETE", "/readyz", {}),
        ],
    )


@pytest.mark.parametrize("service", ["serving", "trainer", "monitor", "ingest"])
def test_bytes_that_are_not_http_get_a_400_or_a_closed_connection(
    service: str, stack_settings: StackSettings, stack: LocalStack
) -> None:
    endpoint = getattr(stack_settings, service)
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"\xff" * 1024 + b"\r\n\r\n",
    ):
        with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock:
            # A server may answer and close before it has read everything: that is fine.
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                sock.sendall(garbage)
                sock.shutdown(socket.SHUT_WR)
            try:
                answer = sock.recv(200)
            except ConnectionResetError:
                answer = b""
        if answer.startswith(b"HTTP/"):
            assert answer.split(b" ", 2)[1].startswith(b"4"), (service, garbage[:10], answer)
        else:
            # Nothing, or (the ingest's wsgiref, to a request with no HTTP version) a bare
            # HTML error page.
            assert answer == b"" or b"Error code: 400" in answer, (service, garbage[:10], answer)


@pytest.fixture()
def private_trainer(
    stack: LocalStack, stack_settings: StackSettings, project_root: Path, tmp_path: Path
) -> Iterator[str]:
    """A trainer with a known token over an empty store: a fuzzed alert that gets through
    starts one run, which fails for want of data; a long cooldown stops any other."""
    settings = BottegaSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=project_root,
        home=tmp_path,
        kafka=stack_settings.kafka,
        mlflow=stack_settings.mlflow,
    )
    (port,) = free_ports(1)
    env = service_env(
        settings,
        project_root,
        BOTTEGA_TRAINER__PORT=str(port),
        BOTTEGA_TRAINER__TOKEN=TOKEN,
        BOTTEGA_RETRAIN__COOLDOWN_S="3600",
        BOTTEGA_RETRAIN__MAX_ATTEMPTS="1",
    )
    url = f"http://127.0.0.1:{port}"
    with service_process("services.trainer", env, url, tmp_path / "logs" / "trainer.log"):
        yield url


def fuzz(url: str, headers: dict[str, str] | None = None) -> set[str]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=40,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            no_server_error()
    return {f"{op.method.upper()} {op.path}" for op in operations}


def test_fuzzing_the_trainer_with_its_token_finds_no_server_error(private_trainer: str) -> None:
    fuzzed = fuzz(private_trainer, {"Authorization": f"Bearer {TOKEN}"})
    assert {"POST /webhook", "POST /retrain", "GET /runs", "GET /runs/{run_id}"} <= fuzzed


def test_fuzzing_the_monitor_finds_no_server_error(
    stack_settings: StackSettings, stack: LocalStack
) -> None:
    fuzzed = fuzz(stack_settings.monitor.url)
    assert {"GET /reports", "GET /reports/{name}", "GET /status"} <= fuzzed
