"""Tests of a layer's `consumers` and `parameter` in the manifest (`manifest.parse`): the
values they give the model (defaults merged, `{layer}` replaced) and every bad input as one
located problem `FILE:LINE:COL: FIELD: message`, in tests/test_manifest.py's style.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_manifest import Expected, assert_problems, layer, parse, problems_of, yaml_lines

from reconciler import model, workspace

SCHEMA = workspace.load_schema()
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders-api"

VALID_CASES = [
    pytest.param(
        yaml_lines("version: 1", *layer("consumers:",
                                        "  functions: [orders-api, billing-worker]",
                                        "  tags: {uses-layer: shared, env: prod}",
                                        "parameter: /layers/shared/latest")),
        lambda m: (m.layers[0].consumers, m.layers[0].parameter),
        (model.Consumers(functions=("orders-api", "billing-worker"),
                         tags=(("env", "prod"), ("uses-layer", "shared")),
                         allow_managed=False),
         "/layers/shared/latest"),
        id="functions-tags-parameter"),
    pytest.param(
        yaml_lines("version: 1", *layer()),
        lambda m: (m.layers[0].consumers, m.layers[0].parameter),
        (None, None),
        id="none-by-default"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {tags: {team: core}, allow_managed: true}")),
        lambda m: m.layers[0].consumers,
        model.Consumers(tags=(("team", "core"),), allow_managed=True),
        id="tags-only-allow-managed"),
    pytest.param(
        yaml_lines("version: 1", "region: [eu-west-1, us-east-1]",
                   *layer(f"consumers: {{functions: ['{FUNCTION_ARN}', "
                          "'123456789012:function:partial']}")),
        lambda m: m.layers[0].consumers.functions,
        (FUNCTION_ARN, "123456789012:function:partial"),
        id="function-arns"),
    pytest.param(
        yaml_lines("version: 1", "defaults:", "  parameter: /layers/{layer}/latest",
                   "  consumers: {functions: [api]}",
                   "layers:", "  one: {content: {path: x}}",
                   "  two: {content: {path: y}, consumers: {functions: [worker]},"
                   " parameter: /own}"),
        lambda m: [(spec.key, spec.parameter, spec.consumers.functions) for spec in m.layers],
        [("one", "/layers/one/latest", ("api",)), ("two", "/own", ("worker",))],
        id="defaults-with-layer-placeholder"),
    pytest.param(
        yaml_lines("version: 1", "region: eu-west-1", "defaults:",
                   "  parameter: /layers/{layer}/latest",
                   "layers:", "  'arn:aws:lambda:eu-west-1:123456789012:layer:foo':",
                   "    content: {path: x}"),
        lambda m: m.layers[0].parameter,
        "/layers/foo/latest",
        id="placeholder-is-the-layer-name-of-an-arn-key"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: plain-name.v1")),
        lambda m: m.layers[0].parameter,
        "plain-name.v1",
        id="parameter-without-hierarchy"),
]


@pytest.mark.parametrize(("text", "get", "expected"), VALID_CASES)
def test_valid_consumers(text: str, get: Callable[[model.Manifest], Any], expected: Any) -> None:
    """A valid `consumers` / `parameter` gives exactly these model values."""
    assert get(parse(text)) == expected


BAD_CASES = [
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {allow_managed: true}")),
        [Expected(4, 5, "layers.a.consumers", "names no `functions` and no `tags`")],
        id="consumers-without-functions-or-tags"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {functions: [api, worker, api]}")),
        [Expected(4, 42, "layers.a.consumers.functions[2]", "'api' is listed twice")],
        id="function-listed-twice"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {functions: ['has space']}")),
        [Expected(4, 29, "layers.a.consumers.functions[0]", "is not of the expected form")],
        id="function-name-not-lambdas-pattern"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {functions: ['api:prod']}")),
        [Expected(4, 29, "layers.a.consumers.functions[0]", "names a version or alias")],
        id="function-alias"),
    pytest.param(
        yaml_lines("version: 1", *layer(f"consumers: {{functions: ['{FUNCTION_ARN}:7']}}")),
        [Expected(4, 29, "layers.a.consumers.functions[0]", "names a version or alias")],
        id="function-arn-version"),
    pytest.param(
        yaml_lines("version: 1", "region: us-east-1",
                   *layer(f"consumers: {{functions: ['{FUNCTION_ARN}']}}")),
        [Expected(5, 29, "layers.a.consumers.functions[0]",
                  "in region eu-west-1, which is not among the manifest's regions")],
        id="function-arn-of-another-region"),
    pytest.param(
        yaml_lines("version: 1", *layer(f"consumers: {{functions: ['{'f' * 65}']}}")),
        [Expected(4, 29, "layers.a.consumers.functions[0]", "at most 64 characters")],
        id="function-name-too-long"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {functions: []}")),
        [Expected(4, 28, "layers.a.consumers.functions", "needs at least 1 item")],
        id="empty-function-list"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {tags: {team: 7}}")),
        [Expected(4, 30, "layers.a.consumers.tags.team", "")],
        id="tag-value-not-a-string"),
    pytest.param(
        yaml_lines("version: 1", *layer("consumers: {functions: [a], alow_managed: true}")),
        [Expected(4, 33, "layers.a.consumers.alow_managed", "did you mean 'allow_managed'")],
        id="unknown-consumers-key"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: layers/x")),
        [Expected(4, 5, "layers.a.parameter", "a hierarchy begins with `/`")],
        id="parameter-hierarchy-not-rooted"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: /layers//x")),
        [Expected(4, 5, "layers.a.parameter", "a name at every level")],
        id="parameter-empty-level"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: /layers/x y")),
        [Expected(4, 5, "layers.a.parameter", "is not an SSM parameter name")],
        id="parameter-space"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: /AWS/layers")),
        [Expected(4, 5, "layers.a.parameter", "reserves names that begin with `aws` or `ssm`")],
        id="parameter-reserved-prefix"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: " + "/l" * 16)),
        [Expected(4, 5, "layers.a.parameter", "more than 15 levels")],
        id="parameter-too-deep"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: /layers/{name}/latest")),
        [Expected(4, 5, "layers.a.parameter", "only `{layer}` may be replaced")],
        id="parameter-unknown-placeholder"),
    pytest.param(
        yaml_lines("version: 1", *layer("parameter: ''")),
        [Expected(4, 16, "layers.a.parameter", "must not be empty")],
        id="parameter-empty"),
    pytest.param(
        yaml_lines("version: 1", "defaults:", "  parameter: /layers/latest",
                   "layers:", "  one: {content: {path: x}}", "  two: {content: {path: y}}"),
        [Expected(3, 3, "defaults.parameter",
                  "for layer 'two': names the parameter '/layers/latest', as layer 'one'")],
        id="default-parameter-without-placeholder-collides"),
    pytest.param(
        yaml_lines("version: 1", "layers:", "  one: {content: {path: x}, parameter: /p}",
                   "  two: {content: {path: y}, parameter: /p}"),
        [Expected(4, 29, "layers.two.parameter", "names the parameter '/p', as layer 'one'")],
        id="two-layers-one-parameter"),
    pytest.param(
        yaml_lines("version: 1", "defaults:", "  consumers: {functions: ['a:b']}",
                   *layer()),
        [Expected(3, 27, "defaults.consumers.functions[0]", "names a version or alias")],
        id="defaults-consumers-checked"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CASES)
def test_bad_consumers_are_located(text: str, expected: list[Expected]) -> None:
    """Each mistake in `consumers` or `parameter` is one problem at its file:line:col."""
    assert_problems(problems_of(text), expected)


def test_schema_takes_the_function_name_from_botocores_lambda_model() -> None:
    """The consumer function pattern and length are UpdateFunctionConfiguration's, and the
    parameter's length PutParameter's, as botocore's models give them."""
    import botocore.session

    session = botocore.session.get_session()
    update = session.get_service_model("lambda").operation_model(
        "UpdateFunctionConfiguration").input_shape
    put = session.get_service_model("ssm").operation_model("PutParameter").input_shape
    assert update is not None and put is not None
    layer_schema = SCHEMA["properties"]["layers"]["additionalProperties"]["properties"]
    function = layer_schema["consumers"]["properties"]["functions"]["items"]
    assert function["pattern"] == "^(?:" + update.members["FunctionName"].metadata[
        "pattern"] + ")$"
    assert function["maxLength"] == update.members["FunctionName"].metadata["max"]
    assert layer_schema["parameter"]["maxLength"] == put.members["Name"].metadata["max"]
