"""The user's path in Docker mode, on a real engine: `make up`, `bottega status`, `make replay`
until the loop closes inside the containers, and `make down` then `make up` keeping the data.

The tests share one stack (conftest.py) and run in file order; each picks up where the one
before left it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bottega.stack.compose import COMPOSE_FILE, active_services, is_one_shot, load_compose
from tests.docker.conftest import PROJECT, DockerStack
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(2400)

# The body of a prediction request: a payment of a card the bootstrap's history knows, dated in
# that history. A request with no time is scored as of now, which a replay's simulated clock has
# not reached: the monitor's event-time windows would wait for it.
BODY = {
    "event_time": (datetime.now(UTC) - timedelta(days=30)).isoformat(),
    "card_id": "card-00001",
    "merchant_id": "m-0001",
    "amount": 42.5,
    "merchant_category": "grocery",
    "country": "DE",
    "card_country": "DE",
    "channel": "online",
}


def compose_services(stack: DockerStack) -> dict[str, dict[str, Any]]:
    """The services `make up` starts, as the compose file declares them."""
    return active_services(load_compose(stack.root / "infra" / COMPOSE_FILE))


def health(container: dict[str, Any]) -> str:
    state = container["State"]
    return str((state.get("Health") or {}).get("Status") or state["Status"])


def champion(stack: DockerStack) -> dict[str, Any]:
    model: dict[str, Any] = stack.serving("/model").json()
    return model


def predict(stack: DockerStack) -> dict[str, Any]:
    answer = stack.serving("/predict", json=BODY)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_make_up_builds_the_images_and_brings_every_service_up_healthy(
    docker_stack: DockerStack,
) -> None:
    up = docker_stack.up
    output = up.stdout + up.stderr
    assert up.returncode == 0, output[-6000:]
    assert "Traceback" not in output
    # Bottega's narration, not compose's, the builder's or pip's (their output is in the log).
    assert "images built in" in output and "Docker mode is up in" in output
    assert "---> " not in output and "Successfully built" not in output
    log = (docker_stack.home / "logs" / "compose.log").read_text()
    # The classic builder's last words for an image, or BuildKit's.
    assert "Successfully tagged bottega/ml:" in log or "naming to docker.io/bottega/ml:" in log
    containers = docker_stack.containers()
    services = compose_services(docker_stack)
    for name, service in services.items():
        assert name in containers, f"{name} has no container"
        state = containers[name]["State"]
        if is_one_shot(service):
            assert (state["Status"], state["ExitCode"]) == ("exited", 0), name
        else:
            assert health(containers[name]) == "healthy", name
    assert "grafana" not in containers and "cli" not in containers
    # Bottega's containers read the settings file the CLI reads (compose's env_file).
    assert "BOTTEGA_SERVE__WORKERS=1" in containers["serving"]["Config"]["Env"]
    # Every image but Grafana's was built here, from the one base.
    images = {containers[name]["Config"]["Image"] for name in services}
    assert all(image.startswith("bottega/") for image in images), images
    # The bootstrap job gave a champion, which the model server holds and scores with.
    model = champion(docker_stack)
    assert model["champion"]["version"] == "1", model
    assert predict(docker_stack)["model_version"] == "1"
    built = re.search(r"images built in (\d+)s", output)
    docker_stack.record(
        "up",
        seconds=round(docker_stack.up_seconds, 1),
        images_built_seconds=int(built.group(1)) if built else None,
    )


def test_status_reads_each_containers_health_from_the_engine(docker_stack: DockerStack) -> None:
    done = docker_stack.make("status", timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│")}
    for name, service in compose_services(docker_stack).items():
        expected = "exited (0)" if is_one_shot(service) else "running (healthy)"
        assert expected in lines[name], lines.get(name)
    port = docker_stack.settings.serving.port
    assert f"http://127.0.0.1:{port}" in lines["serving"]


def trainer_runs(stack: DockerStack) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.settings.trainer.url}/runs", timeout=10)
    runs: list[dict[str, Any]] = answer.json()
    return runs


def test_a_replay_in_the_stack_closes_the_loop_and_the_server_swaps_without_a_restart(
    docker_stack: DockerStack,
) -> None:
    before = docker_stack.containers()["serving"]["State"]
    # 36 simulated hours of the fraud ring, as `make demo` plays them: six calm, then the ring.
    replay = docker_stack.make(
        "replay", "SCENARIO=fraud-ring", "ARGS=--duration 36h --report /var/lib/bottega/ring.json"
    )
    output = replay.stdout + replay.stderr
    assert replay.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    promoted: list[dict[str, Any]] = []

    def loop_closed() -> bool:
        runs = trainer_runs(docker_stack)
        assert not [r for r in runs if r["status"] == "failed"], runs
        rejected = [r.get("promotion") for r in runs if r.get("decision") == "rejected"]
        assert not rejected, f"the retrained model was not promoted: {rejected}"
        promoted[:] = [r for r in runs if r.get("decision") == "promoted"]
        return bool(promoted) and champion(docker_stack)["champion"]["version"] != "1"

    # A retraining that the alert started may still be running when the replay ends.
    wait_for(loop_closed, timeout_s=600, what="a promoted model served", every_s=5)
    answered = predict(docker_stack)

    run = promoted[0]
    assert run["trigger"] == "alert" and run["alerts"], run
    new_version = champion(docker_stack)["champion"]["version"]
    assert new_version == str(run["version"]) and answered["model_version"] == new_version
    # Prometheus fired the retrain alert and Alertmanager delivered it to the trainer.
    fired = httpx.get(
        f"{docker_stack.settings.prometheus.url}/api/v1/query",
        params={"query": 'max_over_time(ALERTS{alertstate="firing",retrain="true"}[30m])'},
        timeout=10,
    ).json()["data"]["result"]
    assert fired, "no retrain alert fired in Prometheus"
    # The server swapped in memory: same container, never restarted.
    after = docker_stack.containers()["serving"]
    assert after["State"]["StartedAt"] == before["StartedAt"]
    assert after["RestartCount"] == 0
    docker_stack.record(
        "loop",
        alerts=run["alerts"],
        version=new_version,
        run_started=run["started_at"],
        run_finished=run["finished_at"],
    )


def test_down_keeps_the_volumes_and_up_again_keeps_the_champion_offsets_and_store(
    docker_stack: DockerStack, tmp_path: Path
) -> None:
    version = champion(docker_stack)["champion"]["version"]
    store_before = tmp_path / "before.json"
    probe = docker_stack.inside("store", "--out", "/out/before.json", out=tmp_path)
    assert probe.wait(timeout=300) == 0, (tmp_path / "inside.log").read_text()[-3000:]
    before = json.loads(store_before.read_text())
    assert before["rows"]["transactions"] > 0

    down = docker_stack.make("down", timeout_s=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    assert docker_stack.containers() == {}, "make down left containers behind"
    volumes = subprocess.run(
        [
            "docker",
            "volume",
            "ls",
            "--quiet",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {f"{PROJECT}_kafka-data", f"{PROJECT}_bottega-state", f"{PROJECT}_redis-data"} <= set(
        volumes
    )

    started = time.monotonic()
    up = docker_stack.make("up", timeout_s=1200)
    assert up.returncode == 0, (up.stdout + up.stderr)[-6000:]
    warm_s = time.monotonic() - started
    after_file = tmp_path / "after.json"
    probe = docker_stack.inside("store", "--out", "/out/after.json", out=tmp_path)
    assert probe.wait(timeout=300) == 0, (tmp_path / "inside.log").read_text()[-3000:]
    after = json.loads(after_file.read_text())
    # The champion is the one promoted before: bootstrap found it and did nothing.
    assert champion(docker_stack)["champion"]["version"] == version
    assert predict(docker_stack)["model_version"] == version
    # The feature store's history and its online values are the same; the ingest's committed
    # offsets held, so it read nothing twice (the rows would have grown).
    assert after["rows"] == before["rows"]
    assert after["newest_transaction"] == before["newest_transaction"]
    assert after["online"] == before["online"] and any(
        value is not None for row in after["online"] for value in row.values()
    )
    # The consumer groups' committed offsets held: the ingest reads on where it stopped, nothing
    # twice, and the monitor neither starts over nor skips (it may have read the predictions of
    # this test's own requests since).
    ingest = ("bottega-ingest", "bottega-ingest-labels")
    assert {g: after["committed"][g] for g in ingest} == {g: before["committed"][g] for g in ingest}
    assert before["committed"]["bottega-ingest"] > 0
    assert 0 <= after["committed"]["bottega-monitor"] - before["committed"]["bottega-monitor"] <= 4
    docker_stack.record(
        "down_up",
        warm_up_seconds=round(warm_s, 1),
        rows=after["rows"],
        committed=after["committed"],
    )
