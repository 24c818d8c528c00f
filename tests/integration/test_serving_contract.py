"""Schemathesis against the model server's own OpenAPI schema: whatever it generates, valid
bodies and invalid ones alike, the server answers without a 5xx.

Only the server-error check runs: the contract under test is "never a 5xx"; the 4xx bodies are
checked field by field in ``test_serving``. (Schemathesis's lazy pytest loader,
``from_fixture``, fails under pytest 9, so the operations are driven with Hypothesis here.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tests.integration.serving_stack import Served


def test_no_generated_input_makes_the_server_fail(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/predict", "/predict_batch", "/model"} <= paths
    for operation in operations:
        # A GET with no parameters has no invalid form: negative cases only where there is a body.
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=50,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            no_server_error()
