"""Every provider of the registry has an emulator module the local stack and the bench can find:
its server class as `EMULATOR` and sample params its request model accepts."""

from __future__ import annotations

import pytest
from jobrelay.registry import JOB_REQUEST_ADAPTER, PROVIDER_NAMES, REGISTRY
from jobrelay_local.emulators import EMULATORS, EmulatorServer, emulator_module, sample_params


def test_the_emulators_are_the_registry_providers_in_its_order() -> None:
    assert tuple(EMULATORS) == PROVIDER_NAMES


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_each_provider_has_an_emulator_module_serving_it(provider: str) -> None:
    # Given the provider's emulator module, found by its registry name
    module = emulator_module(provider)

    # Then its conventional attribute is the emulator of that provider
    assert module.__name__ == f"jobrelay_local.emulators.{provider}"
    assert issubclass(module.EMULATOR, EmulatorServer)
    assert module.EMULATOR.provider == provider
    assert EMULATORS[provider] is module.EMULATOR


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_each_emulator_sample_params_are_a_valid_request_of_its_provider(provider: str) -> None:
    # Given the sample params of the provider's emulator module
    params = sample_params(provider, "registry-sample-1")

    # When they are read by the provider's params model and as a whole request
    parsed = REGISTRY[provider].params_model.model_validate(params)
    request = JOB_REQUEST_ADAPTER.validate_python(
        {"request_id": "registry-sample-1", "provider": provider, "params": params}
    )

    # Then both accept them, and the request is the provider's
    assert parsed.model_dump(mode="json", exclude_unset=True) == params
    assert request.provider == provider
