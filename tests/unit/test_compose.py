"""Docker mode, checked statically: the compose files against the Compose Specification's JSON
schema, and the rules the stack relies on to come up on the first try."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import jsonschema_rs
import pytest
import yaml

from bottega.errors import ConfigError
from bottega.stack.compose import interpolate, is_one_shot, load_compose
from bottega.stack.images import DOCKERFILES, base_image
from bottega.stack.modes import container_ports
from tests.docker_mode import INFRA, ROOT, SECRETS, compose, raw_compose, services

SCHEMA = json.loads((INFRA / "schema" / "compose-spec.json").read_text())
# The one image that is pulled, not built here.
PULLED = {"grafana"}
NOT_PUBLISHED = ("kafka", "redis", "postgres")


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema_rs.validator_for(SCHEMA)
    return [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu.yaml"])
def test_compose_files_match_the_compose_specification(name: str) -> None:
    assert schema_errors(load_compose(INFRA / name, SECRETS)) == []


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    broken = compose()
    broken["services"]["kafka"]["healthchek"] = broken["services"]["kafka"].pop("healthcheck")
    errors = schema_errors(broken)
    assert errors and "healthchek" in " ".join(errors)


def unpinned(image: str) -> bool:
    """True for an image with no tag, ``latest``, or a tag with no version number in it."""
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return not name or not tag or tag == "latest" or not re.search(r"\d", tag)


@pytest.mark.parametrize("image", ["redis", "redis:latest", "grafana/grafana:main", "x:stable"])
def test_a_floating_image_is_not_pinned(image: str) -> None:
    assert unpinned(image)


def test_every_image_is_pinned_to_a_version() -> None:
    every = compose("compose.yaml", "compose.gpu.yaml")["services"]
    images = {name: service["image"] for name, service in every.items()}
    assert set(images) == set(every), "every service names its image"
    assert [f"{n}: {i}" for n, i in images.items() if unpinned(i)] == []
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    own = {i for n, i in images.items() if n not in PULLED and n != "kafka"}
    assert own and all(i.startswith("bottega/") and i.endswith(f":{version}") for i in own)
    pom = (INFRA / "kafka" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert kafka_version and images["kafka"] == f"bottega/kafka:{kafka_version.group(1)}"


def test_every_image_but_grafanas_is_built_here_from_one_base() -> None:
    every = compose()["services"]
    assert base_image(INFRA) == "debian:bookworm-slim"
    for name in DOCKERFILES:
        text = (INFRA / name).read_text()
        # Every stage starts from the base argument, from an earlier stage, or from nothing
        # (`scratch`, which is no image: the engine never pulls it).
        for source in re.findall(r"^FROM (\S+)", text, re.M):
            assert source in ("${BASE_IMAGE}", "scratch") or re.search(
                rf" AS {source}$", text, re.M
            ), source
        # No frontend image to pull (`# syntax=`), no BuildKit-only mount: the classic builder
        # (an engine without buildx) builds them too.
        assert "# syntax" not in text and "--mount" not in text
    built = {n: s for n, s in every.items() if n not in PULLED}
    assert all("build" in s or s.get("pull_policy") == "never" for s in built.values())
    for name in PULLED:
        assert "build" not in every[name] and every[name]["profiles"] == ["grafana"]


def test_each_image_is_built_by_one_service_and_never_pulled_by_the_others() -> None:
    # Compose's classic builder does not share work between services that build one image: each
    # would run the whole build again, in parallel.
    builders: dict[str, list[str]] = {}
    for name, service in compose()["services"].items():
        if "build" in service:
            builders.setdefault(service["image"], []).append(name)
            assert service["pull_policy"] == "build", name
            dockerfile = service["build"]["dockerfile"]
            assert service["build"]["context"] == ".." and (INFRA.parent / dockerfile).exists()
    assert [image for image, names in builders.items() if len(names) > 1] == []
    for name, service in compose()["services"].items():
        if "build" not in service and name not in PULLED:
            assert service["image"] in builders, name
            assert service["pull_policy"] == "never", name


def test_every_dependency_is_health_checked_or_a_one_shot_job() -> None:
    every = compose()["services"]
    problems = []
    for name, service in every.items():
        for target, condition in (service.get("depends_on") or {}).items():
            wanted = condition.get("condition")
            if wanted == "service_healthy" and "healthcheck" not in every[target]:
                problems.append(f"{name} waits for {target}'s health, which it lacks")
            elif wanted == "service_completed_successfully" and not is_one_shot(every[target]):
                problems.append(f"{name} waits for {target} to complete; it is not a job")
            elif wanted not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{name} waits for {target} only to start ({wanted})")
    assert problems == []


def test_every_one_shot_job_is_awaited_so_up_wait_succeeds() -> None:
    # `docker compose up --wait` fails on a job that exits unless a service waits for it.
    every = services()
    awaited = {
        target
        for service in every.values()
        for target, c in (service.get("depends_on") or {}).items()
        if c.get("condition") == "service_completed_successfully"
    }
    jobs = {name for name, service in every.items() if is_one_shot(service)}
    assert jobs == {"kafka-init", "feast-apply", "trainer-token", "bootstrap"}
    assert jobs <= awaited


def test_long_running_services_restart_are_limited_and_health_checked() -> None:
    problems = []
    for name, service in services().items():
        if is_one_shot(service):
            continue
        if service.get("restart") != "unless-stopped":
            problems.append(f"{name}: restart {service.get('restart')}")
        if "healthcheck" not in service or "mem_limit" not in service:
            problems.append(f"{name}: no healthcheck or no memory limit")
    assert problems == []


def test_only_ui_ports_are_published_and_only_on_loopback() -> None:
    every = services()
    for name in NOT_PUBLISHED:
        assert "ports" not in every[name], f"{name} must not be published"
    published = [str(p) for s in every.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)


def test_state_lives_in_named_volumes_and_config_is_mounted_read_only() -> None:
    document = raw_compose()
    named = set(document["volumes"])
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source, target, *mode = str(volume).split(":")
            if source.startswith("."):
                assert mode == ["ro"], f"{name}: config mount {volume} must be read-only"
            else:
                assert source in named, f"{name}: {source} is not a named volume"


def test_no_secret_is_in_a_committed_file() -> None:
    text = (INFRA / "compose.yaml").read_text()
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", text), f"{name} must be required"
    env_example = (ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^# {name}=$", env_example, re.M), f".env.example leaves {name} unset"
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD"):
        load_compose(INFRA / "compose.yaml", {})


def test_env_example_lists_every_variable_compose_reads() -> None:
    text = (INFRA / "compose.yaml").read_text() + (INFRA / "compose.gpu.yaml").read_text()
    variables = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z0-9_]+)=", example, re.M))
    # The env file's own name is set in the environment, never in the file; its header says so.
    assert "BOTTEGA_ENV_FILE" in variables and "BOTTEGA_ENV_FILE" in example
    assert variables and variables - listed == {"BOTTEGA_ENV_FILE"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A:-x}", "x"),
        ("${B:-x}", "b"),
        ("$${B}", "${B}"),
        ("${B}-${C-y}", "b-y"),
        ("${E:-d}", "d"),
        ("${E-d}", ""),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert interpolate(text, {"B": "b", "E": ""}) == expected


def test_prometheus_and_grafana_read_the_committed_config() -> None:
    every = services()
    prometheus = every["prometheus"]
    assert "../monitoring:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]  # relative: /etc/prometheus/rules
    grafana = compose()["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["../monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "monitoring/grafana/provisioning/dashboards/bottega.yml").read_text()
    )["providers"][0]
    assert mounts["../monitoring/grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (ROOT / "monitoring/grafana/dashboards" / home.rsplit("/", 1)[1]).exists()
    assert int(grafana["environment"]["GF_SERVER_HTTP_PORT"]) in container_ports(grafana)


def test_alertmanager_reads_the_token_the_job_writes_and_calls_the_trainer() -> None:
    every = services()
    config = yaml.safe_load((ROOT / "monitoring" / "alertmanager.yml").read_text())
    hook = next(r for r in config["receivers"] if r["name"] == "trainer")["webhook_configs"][0]
    token_path = hook["http_config"]["authorization"]["credentials_file"]
    written = every["trainer-token"]["command"][-1]
    assert written == token_path
    folder = token_path.rsplit("/", 1)[0]
    assert f"secrets:{folder}" in every["trainer-token"]["volumes"]
    assert f"secrets:{folder}:ro" in every["alertmanager"]["volumes"]
    host, port = hook["url"].removeprefix("http://").split("/")[0].split(":")
    assert host == "trainer" and int(port) in container_ports(every["trainer"])
    # The trainer checks the same token that the job wrote.
    token = every["trainer"]["environment"]["BOTTEGA_TRAINER__TOKEN"]
    assert token == every["trainer-token"]["environment"]["BOTTEGA_TRAINER__TOKEN"]


def test_the_gpu_override_reserves_an_nvidia_gpu_for_serving_and_training() -> None:
    every = services("compose.yaml", "compose.gpu.yaml")
    for name in ("serving", "trainer"):
        devices = every[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert every["serving"]["environment"]["BOTTEGA_SERVE__DEVICE"] == "cuda"
    # The override adds to the base service: its other settings are kept.
    assert every["serving"]["environment"]["BOTTEGA_KAFKA__HOST"] == "kafka"
    assert "deploy" not in services()["serving"]


def test_the_app_dockerfile_builds_three_lean_images_from_the_lock() -> None:
    text = (INFRA / "Dockerfile").read_text()
    found = re.findall(r"^FROM (\S+) AS ([\w-]+)$", text, re.M)
    stages = {stage: source for source, stage in found}
    targets = {
        service["build"]["target"]
        for service in compose()["services"].values()
        if service.get("build", {}).get("dockerfile") == "infra/Dockerfile"
    }
    assert targets == {"mlflow", "app", "ml"}
    # ml is app's environment plus the layer that installing torch adds, not an environment of
    # its own.
    assert stages["ml-env"] == "app-env" and stages["ml"] == "ml-env" and stages["app"] == "app-env"
    ml_env = text.split(" AS ml-env\n", 1)[1].split("\nFROM ", 1)[0]
    assert "--requirement /tmp/ml.txt" in ml_env
    # Every install is the lock's (the tools' own upgrade aside), or the project alone.
    installs = [line for line in text.splitlines() if "pip install" in line]
    packages = [line for line in installs if "--upgrade" not in line]
    assert len(packages) == 5
    locked = re.compile(r"--constraint \S*constraints\.txt")
    assert all(locked.search(line) or "--no-deps" in line for line in packages), packages
    # Each image that runs does so as an unprivileged user.
    for target in targets:
        block = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        users = re.findall(r"^USER (\S+)$", block, re.M)
        assert users and users[-1].split(":")[0] not in ("0", "root"), target
    # torch is an extra, which only the ml image installs.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("torch") for d in project["dependencies"])
    assert project["optional-dependencies"]["ml"] == ["torch>=2.5"]
