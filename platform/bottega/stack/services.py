"""The services of the local stack, declared as :class:`ServiceSpec` objects.

Later components (the feature store, serving, ingest, monitor and trainer) add their specs to
:func:`local_services`; the runner needs no change to supervise them.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from string import Template

from bottega.auth import ensure_trainer_token
from bottega.events import all_topics
from bottega.stack.health import http_json, http_ok, kafka_metadata_ok
from bottega.stack.monitoring_config import render_alertmanager_config, render_prometheus_config
from bottega.stack.process import spawn_and_wait
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from bottega.stack.spec import Port, Prerequisite, ServiceSpec

KAFKA_MAIN = "kafka.Kafka"
KAFKA_STORAGE_TOOL = "kafka.tools.StorageTool"


def java_prerequisite(settings: StackSettings) -> Prerequisite:
    """Java 17+, which runs the Kafka broker."""
    return Prerequisite(
        "java",
        "install Java 17+: apt-get install -y openjdk-17-jre-headless",
        executables=(settings.stack.java,),
        check=java_too_old,
    )


def java_too_old(java: str, minimum: int = 17) -> str | None:
    """Why ``java`` cannot run the broker (older than ``minimum``), or None."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{java} -version failed: {exc}"
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return f"cannot read the version of {java}"
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" is Java 8
        major = int(match.group(2))
    return None if major >= minimum else f"java {major} is too old; Kafka needs {minimum}+"


def kafka_jars_prerequisite(settings: StackSettings) -> Prerequisite:
    """The broker's jars, fetched from Maven Central by ``make setup``."""
    return Prerequisite(
        "Kafka broker jars",
        f"fetch them with `make setup` (Maven puts them in {settings.kafka_libs_dir})",
        paths=(settings.kafka_libs_dir / f"kafka_2.13-{kafka_version(settings)}.jar",),
    )


def prometheus_prerequisite(settings: StackSettings) -> Prerequisite:
    """Debian's Prometheus, with promtool beside it."""
    return Prerequisite(
        "prometheus",
        "install it: apt-get install -y prometheus",
        executables=(settings.stack.prometheus_bin,),
    )


def alertmanager_prerequisite(settings: StackSettings) -> Prerequisite:
    """Debian's Alertmanager, with amtool beside it."""
    return Prerequisite(
        "alertmanager",
        "install it: apt-get install -y prometheus-alertmanager",
        executables=settings.stack.alertmanager_bins,
    )


def kafka_version(settings: StackSettings) -> str:
    """The broker version pinned in ``infra/kafka/pom.xml``."""
    pom = (settings.infra_dir / "kafka" / "pom.xml").read_text()
    start = pom.index("<kafka.version>") + len("<kafka.version>")
    return pom[start : pom.index("</kafka.version>", start)].strip()


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def kafka_service(
    settings: StackSettings, *, cluster_id: Callable[[], str] = new_cluster_id
) -> ServiceSpec:
    """A single KRaft broker-and-controller, run from its Maven Central jars.

    ``cluster_id`` names the storage on its first start.
    """
    kafka = settings.kafka
    state = settings.home / "kafka"
    config_path = state / "server.properties"
    data_dir = state / "data"
    log4j = settings.infra_dir / "kafka" / "log4j2.properties"
    java = java_prerequisite(settings)

    def java_command(main: str, *args: str) -> list[str]:
        return [
            java.require(),
            f"-Xms{kafka.heap}",
            f"-Xmx{kafka.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            str(settings.kafka_libs_dir / "*"),
            main,
            *args,
        ]

    def prepare() -> None:
        template = Template((settings.infra_dir / "kafka" / "server.properties").read_text())
        state.mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            template.substitute(
                host=kafka.host,
                bind_host=settings.bind_host,
                port=kafka.port,
                controller_port=kafka.controller_port,
                partitions=kafka.partitions,
                data_dir=data_dir,
            )
        )
        if not (data_dir / "meta.properties").exists():
            # First start: format the storage with a fresh cluster id. One id in 64 starts with
            # "-", which the tool's parser would read as an option: pass it as --cluster-id=ID.
            spawn_and_wait(
                java_command(
                    KAFKA_STORAGE_TOOL,
                    "format",
                    f"--cluster-id={cluster_id()}",
                    "-c",
                    str(config_path),
                ),
                log_path=settings.home / "logs" / "kafka-format.log",
                cwd=settings.project_root,
                timeout_s=120,
            )

    def create_bottega_topics() -> None:
        from bottega.bus import create_topics

        create_topics(kafka, all_topics())

    return ServiceSpec(
        name="kafka",
        description="Apache Kafka broker (KRaft, one node)",
        command=lambda: java_command(KAFKA_MAIN, str(config_path)),
        ports=(Port("kafka", kafka.port), Port("kafka-controller", kafka.controller_port)),
        health=lambda: kafka_metadata_ok(kafka),
        url=f"kafka://{kafka.bootstrap_servers}",
        prerequisites=(java, kafka_jars_prerequisite(settings)),
        prepare=prepare,
        after_start=create_bottega_topics,
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def mlflow_service(settings: StackSettings) -> ServiceSpec:
    """``mlflow server`` on SQLite, serving artifacts from under the state directory."""
    state = settings.home / "mlflow"
    endpoint = settings.mlflow

    def command() -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{state / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            (state / "artifacts").as_uri(),
            "--host",
            settings.bind_host,
            "--port",
            str(endpoint.port),
            "--workers",
            str(settings.stack.mlflow_workers),
            "--expose-prometheus",
            str(state / "prometheus"),
            "--allowed-hosts",
            # The Host headers clients send: the endpoint host and the bind address.
            ",".join(
                sorted(
                    {f"{h}:{endpoint.port}" for h in (endpoint.host, settings.bind_host)}
                    | {endpoint.host}
                )
            ),
        ]

    return ServiceSpec(
        name="mlflow",
        description="MLflow tracking server and model registry",
        command=command,
        ports=(Port("mlflow", endpoint.port),),
        health=lambda: http_ok(f"{endpoint.url}/health"),
        url=endpoint.url,
        # Server-side jobs cost about 2 GB and Bottega does not use them.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        prepare=lambda: (state / "artifacts").mkdir(parents=True, exist_ok=True),
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def alertmanager_service(settings: StackSettings) -> ServiceSpec:
    """Debian's Alertmanager with ``monitoring/alertmanager.yml``, rendered for local mode: the
    trainer's address from settings, its bearer token from the stack's token file."""
    endpoint = settings.alertmanager
    binary = alertmanager_prerequisite(settings)
    state = settings.home / "alertmanager"
    data_dir = state / "data"
    config_path = state / "alertmanager.yml"

    def prepare() -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        render_alertmanager_config(settings, config_path, ensure_trainer_token(settings))

    return ServiceSpec(
        name="alertmanager",
        description="Prometheus Alertmanager",
        command=lambda: [
            binary.require(),
            f"--config.file={config_path}",
            f"--storage.path={data_dir}",
            f"--web.listen-address={settings.bind_host}:{endpoint.port}",
            f"--web.external-url={endpoint.url}",
            # One node: no gossip cluster, which would otherwise bind 0.0.0.0:9094.
            "--cluster.listen-address=",
        ],
        ports=(Port("alertmanager", endpoint.port),),
        health=lambda: http_ok(f"{endpoint.url}/-/ready"),
        url=endpoint.url,
        prerequisites=(binary,),
        prepare=prepare,
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def prometheus_service(settings: StackSettings) -> ServiceSpec:
    """Debian's Prometheus with ``monitoring/prometheus.yml``, its targets set from settings."""
    endpoint = settings.prometheus
    binary = prometheus_prerequisite(settings)
    state = settings.home / "prometheus"
    config_path = state / "prometheus.yml"

    def prepare() -> None:
        state.mkdir(parents=True, exist_ok=True)
        render_prometheus_config(settings, config_path)

    return ServiceSpec(
        name="prometheus",
        description="Prometheus: scrapes every service and evaluates the alert rules",
        command=lambda: [
            binary.require(),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={state / 'data'}",
            f"--web.listen-address={settings.bind_host}:{endpoint.port}",
            f"--web.external-url={endpoint.url}",
            "--web.enable-lifecycle",
        ],
        ports=(Port("prometheus", endpoint.port),),
        health=lambda: http_ok(f"{endpoint.url}/-/ready"),
        url=endpoint.url,
        depends_on=("alertmanager",),
        prerequisites=(binary,),
        prepare=prepare,
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def apply_feature_repo(settings: StackSettings) -> None:
    """The one-shot ``feast apply`` of local mode: register the feature repo before the ingest,
    the model server or anything else reads it (idempotent)."""
    from bottega.usecases.fraud.store import FraudFeatureStore

    FraudFeatureStore(settings).apply()


def ingest_service(settings: StackSettings) -> ServiceSpec:
    """The streaming ingest, ``python -m services.ingest``; ready once it has recovered."""
    endpoint = settings.ingest

    return ServiceSpec(
        name="ingest",
        description="Streaming ingest: transactions and labels into Feast",
        command=lambda: [sys.executable, "-m", "services.ingest"],
        ports=(Port("ingest", endpoint.port),),
        health=lambda: http_ok(f"{endpoint.url}/readyz"),
        url=endpoint.url,
        depends_on=("kafka",),
        env=settings.to_env(),
        prepare=lambda: apply_feature_repo(settings),
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def serving_service(settings: StackSettings) -> ServiceSpec:
    """The model server, ``python -m services.serving`` (which execs ``bentoml serve``).

    Healthy once every answer says a champion is loaded. A stack with no champion yet (before
    ``bottega bootstrap``) has nothing to wait for: the server is healthy once it answers and
    says it is waiting for a model, and it loads the champion as soon as one is promoted.
    """
    endpoint = settings.serving

    def model() -> dict[str, object] | None:
        return http_json(f"{endpoint.url}/model")

    def healthy() -> bool:
        if http_ok(f"{endpoint.url}/readyz"):
            return True
        report = model()
        return report is not None and report.get("state") == "no_model"

    def detail() -> str:
        report = model()
        if report is None:
            return ""
        champion = report.get("champion")
        if not isinstance(champion, dict):
            return "waiting for a champion (bottega bootstrap)"
        line = f"champion v{champion.get('version')} on {report.get('device')}"
        challenger = report.get("challenger")
        if isinstance(challenger, dict):
            line += f", shadow v{challenger.get('version')}"
        if report.get("state") == "degraded":
            line += " (degraded: MLflow unreachable, cached model)"
        return line

    return ServiceSpec(
        name="serving",
        description="BentoML model server: /predict with the champion",
        command=lambda: [sys.executable, "-m", "services.serving"],
        ports=(Port("serving", endpoint.port),),
        health=healthy,
        url=endpoint.url,
        depends_on=("kafka", "mlflow"),
        env=settings.to_env(),
        prepare=lambda: apply_feature_repo(settings),
        detail=detail,
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def monitor_service(settings: StackSettings) -> ServiceSpec:
    """The monitor, ``python -m services.monitor``: drift and quality, metrics and reports."""
    endpoint = settings.monitor
    return ServiceSpec(
        name="monitor",
        description="Monitor: drift and online quality of the champion, per window",
        command=lambda: [sys.executable, "-m", "services.monitor"],
        ports=(Port("monitor", endpoint.port),),
        health=lambda: http_ok(f"{endpoint.url}/readyz"),
        url=endpoint.url,
        depends_on=("kafka", "mlflow"),
        env=settings.to_env(),
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def trainer_service(settings: StackSettings) -> ServiceSpec:
    """The trainer, ``python -m services.trainer``: the retrain webhook, train and promote."""
    endpoint = settings.trainer

    def prepare() -> None:
        # The trainer reads the token file that Alertmanager reads, unless a token is set.
        ensure_trainer_token(settings)

    return ServiceSpec(
        name="trainer",
        description="Trainer: retrains and promotes on retrain alerts",
        command=lambda: [sys.executable, "-m", "services.trainer"],
        ports=(Port("trainer", endpoint.port),),
        health=lambda: http_ok(f"{endpoint.url}/readyz"),
        url=endpoint.url,
        depends_on=("kafka", "mlflow"),
        env=settings.to_env(),
        prepare=prepare,
        startup_timeout_s=settings.stack.startup_timeout_s,
        stop_timeout_s=settings.stack.stop_timeout_s,
    )


def local_services(settings: StackSettings) -> list[ServiceSpec]:
    """Every service that ``bottega up`` starts in local mode."""
    return [
        kafka_service(settings),
        mlflow_service(settings),
        alertmanager_service(settings),
        prometheus_service(settings),
        ingest_service(settings),
        monitor_service(settings),
        trainer_service(settings),
        serving_service(settings),
    ]


def build_local_stack(settings: StackSettings) -> LocalStack:
    """The local-mode stack runner for ``settings``."""
    return LocalStack(
        local_services(settings),
        home=settings.home,
        bind_host=settings.bind_host,
        cwd=settings.project_root,
    )
