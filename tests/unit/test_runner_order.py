import pytest

from bottega.errors import ConfigError
from bottega.stack.runner import LocalStack, dependency_order
from bottega.stack.spec import ServiceSpec


def spec(name: str, *deps: str) -> ServiceSpec:
    return ServiceSpec(
        name=name, command=lambda: ["true"], ports=(), health=lambda: True, url="", depends_on=deps
    )


def names(specs: list[ServiceSpec]) -> list[str]:
    return [s.name for s in specs]


def test_each_service_comes_after_its_dependencies() -> None:
    ordered = dependency_order(
        [
            spec("serving", "kafka", "mlflow"),
            spec("prometheus", "alertmanager"),
            spec("kafka"),
            spec("mlflow"),
            spec("alertmanager"),
        ]
    )
    order = names(ordered)
    assert order.index("kafka") < order.index("serving")
    assert order.index("mlflow") < order.index("serving")
    assert order.index("alertmanager") < order.index("prometheus")
    assert sorted(order) == ["alertmanager", "kafka", "mlflow", "prometheus", "serving"]


def test_independent_services_keep_their_declared_order() -> None:
    assert names(dependency_order([spec("b"), spec("a"), spec("c")])) == ["b", "a", "c"]


def test_a_cycle_is_named() -> None:
    with pytest.raises(ConfigError, match="a -> b -> a"):
        dependency_order([spec("a", "b"), spec("b", "a")])


def test_an_unknown_dependency_is_named() -> None:
    with pytest.raises(ConfigError, match="feast"):
        dependency_order([spec("serving", "feast")])


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigError, match="share a name"):
        dependency_order([spec("a"), spec("a")])


def test_select_pulls_in_dependencies(tmp_path: object) -> None:
    stack = LocalStack(
        [spec("kafka"), spec("mlflow"), spec("serving", "kafka", "mlflow"), spec("prometheus")],
        home=tmp_path,
        bind_host="127.0.0.1",  # type: ignore[arg-type]
        cwd=tmp_path,
    )  # type: ignore[arg-type]
    assert names(stack.select(["serving"])) == ["kafka", "mlflow", "serving"]
    with pytest.raises(ConfigError, match="unknown service 'grafana'"):
        stack.select(["grafana"])


def test_down_rejects_an_unknown_service(tmp_path: object) -> None:
    stack = LocalStack(
        [spec("kafka")],
        home=tmp_path,
        bind_host="127.0.0.1",  # type: ignore[arg-type]
        cwd=tmp_path,
    )  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown service 'nosuch'"):
        stack.down(["nosuch"])
