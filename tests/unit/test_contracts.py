"""The contracts between the state machine, the template and the layer: every error name the
definition retries or catches is an error class the layer raises, and every provider of the
registry has what a deployed function needs (parameters, environment, secret access)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cfnlint.decode import decode
from jobrelay import errors
from jobrelay.registry import REGISTRY
from jobrelay.schemas import schemas
from jobrelay.settings import FUNCTION_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "job_tracker.asl.json"
# Variables the functions' runtime and libraries read, not jobrelay's settings.
RUNTIME_VARIABLES = ("POWERTOOLS_", "PYDANTIC_")
# The functions that reach providers: they need each provider's variables and its secret.
PROVIDER_FUNCTIONS = ("CreateJobFunction", "PollJobStatusFunction", "TrackerEndedFunction")


def _template() -> dict[str, Any]:
    template, problems = decode(str(ROOT / "template.yaml"))
    assert not problems, problems
    return dict(template)


def _error_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for rule in [*node.get("Retry", []), *node.get("Catch", [])]:
            names.update(rule["ErrorEquals"])
        for child in node.values():
            names |= _error_names(child)
    elif isinstance(node, list):
        for child in node:
            names |= _error_names(child)
    return names


def _environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    own = template["Resources"][logical_id]["Properties"].get("Environment", {})
    return {**shared, **own.get("Variables", {})}


def _secret_refs(template: dict[str, Any], logical_id: str) -> set[str]:
    policies = template["Resources"][logical_id]["Properties"]["Policies"]
    return {
        policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
        for policy in policies
        if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy
    }


def test_every_error_the_state_machine_names_is_an_error_class_of_the_layer():
    names = _error_names(json.loads(DEFINITION.read_text()))
    ours = {name for name in names if not name.startswith(("States.", "Lambda."))}
    assert ours, "the definition retries the layer's transient errors by name"
    for name in sorted(ours):
        raised = getattr(errors, name, None)
        assert isinstance(raised, type), name
        assert issubclass(raised, errors.JobRelayError), name


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_provider_has_what_a_deployed_stack_needs(name):
    entry, template = REGISTRY[name], _template()
    # Given the registry's entry, when the template and the request schema are read,
    # then the provider has its params model in the schema, an adapter, template
    # parameters, its variables and secret access in every function that reaches providers.
    schema = schemas()["job-request.schema.json"]
    assert f"{name.capitalize()}JobRequest" in schema["$defs"]
    assert entry.params_model.__name__ in schema["$defs"]
    assert entry.adapter.name == name
    assert entry.adapter.title
    parameters = template["Parameters"]
    assert parameters[entry.base_url_parameter]["Default"] == entry.default_base_url
    assert entry.secret_parameter in parameters
    # A connection may reach the provider's public hosts unless the stack says otherwise.
    hosts = parameters[entry.allowed_hosts_parameter]["Default"].split(",")
    assert tuple(hosts) == entry.adapter.public_hosts
    assert urlsplit(entry.default_base_url).hostname in hosts
    for function in PROVIDER_FUNCTIONS:
        environment = _environment(template, function)
        assert environment[entry.base_url_env] == {"Ref": entry.base_url_parameter}, function
        assert environment[entry.allowed_hosts_env] == {"Ref": entry.allowed_hosts_parameter}
        assert environment[entry.secret_env] == {"Ref": entry.secret_parameter}, function
        assert entry.secret_parameter in _secret_refs(template, function), function


def test_no_function_may_read_a_secret_of_a_provider_the_registry_does_not_know():
    template = _template()
    known = {entry.secret_parameter for entry in REGISTRY.values()}
    for function in FUNCTION_SETTINGS:
        assert _secret_refs(template, function) <= known, function


@pytest.mark.parametrize("function", sorted(FUNCTION_SETTINGS))
def test_each_function_settings_model_matches_the_environment_the_template_gives_it(function):
    model = FUNCTION_SETTINGS[function]
    environment = _environment(_template(), function)
    provider_variables = {
        variable
        for entry in REGISTRY.values()
        for variable in (entry.base_url_env, entry.secret_env, entry.allowed_hosts_env)
    }
    fields = {field.alias or name.upper() for name, field in model.model_fields.items()}
    required = {
        field.alias or name.upper()
        for name, field in model.model_fields.items()
        if field.is_required()
    }
    # Every variable the model requires is given; every variable given is read by the model.
    assert required <= set(environment), f"{function} lacks {required - set(environment)}"
    unread = {
        variable
        for variable in environment
        if not variable.startswith(RUNTIME_VARIABLES)
        and variable not in fields
        and variable not in provider_variables
    }
    assert not unread, f"{function}'s environment has variables its settings never read: {unread}"


def test_a_missing_or_malformed_variable_fails_with_its_name():
    from jobrelay.errors import ConfigurationError
    from jobrelay.settings import CreateJobSettings, read_settings

    with pytest.raises(ConfigurationError) as missing:
        read_settings(CreateJobSettings, {"PIXXEL_BASE_URL": "https://api.pixxel.space"})
    for variable in ("EVENTS_TOPIC_ARN", "STATE_MACHINE_ARN", "IDEMPOTENCY_TABLE", "DLQ_URL"):
        assert variable in str(missing.value)
    with pytest.raises(ConfigurationError) as malformed:
        read_settings(Settings, {"POLL_INTERVAL_SECONDS": "soon"})
    assert "POLL_INTERVAL_SECONDS" in str(malformed.value)
    with pytest.raises(ConfigurationError) as no_provider:
        read_settings(FUNCTION_SETTINGS["PollJobStatusFunction"], {"IDEMPOTENCY_TABLE": "t"})
    assert all(entry.base_url_env in str(no_provider.value) for entry in REGISTRY.values())


@pytest.mark.parametrize(
    "error",
    [
        "Lambda.TooManyRequestsException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
    ],
)
def test_a_poll_lambda_refuses_through_every_retry_waits_and_polls_again(error: str):
    # Throttling never ends a running job as failed: past PollJobStatus's retries, Lambda's
    # own errors lead back to the poll through a Wait, never to PublishOutcome.
    states = json.loads(DEFINITION.read_text())["States"]
    poll = states["PollJobStatus"]
    assert any(error in retry["ErrorEquals"] for retry in poll["Retry"])
    caught = next(
        c for c in poll["Catch"] if error in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"]
    )
    seen: list[str] = []
    state = caught["Next"]
    while state != "PollJobStatus":
        assert state not in seen, f"{error} loops without polling: {seen}"
        assert states[state]["Type"] == "Wait", f"{error} goes to {state}, not a wait"
        seen.append(state)
        state = states[state]["Next"]
    assert seen
