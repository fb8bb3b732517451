"""Connections: a name resolves to its secret's document, or to its provider's default; an
unknown name or another provider's connection is refused naming `connection`; a document
that is malformed, or sends its credential to a host the stack does not allow, is a
configuration error naming the connection and never quoting the credential."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jobrelay.connections import (
    ConnectionDirectory,
    ConnectionDocument,
    ConnectionUnknown,
    describe,
)
from jobrelay.errors import ConfigurationError
from jobrelay.settings import Settings, read_settings

PREFIX = "jobrelay/connections/"
ENV = {
    "PIXXEL_BASE_URL": "https://api.pixxel.space",
    "PIXXEL_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:px",
    "MATATIKA_BASE_URL": "https://app.matatika.com",
    "CONNECTIONS_PREFIX": PREFIX,
}


class Secrets:
    """A secret store: name -> value; counts reads (with whether they bypassed the cache)."""

    def __init__(self, **values: dict[str, Any] | str) -> None:
        self.values = {
            PREFIX + name: value if isinstance(value, str) else json.dumps(value)
            for name, value in values.items()
        }
        self.reads: list[tuple[str, bool]] = []

    def __call__(self, name: str, max_age: int, refresh: bool) -> str | None:
        self.reads.append((name, refresh))
        return self.values.get(name)


def directory(secrets: Secrets, **env: str) -> ConnectionDirectory:
    settings = read_settings(Settings, {**ENV, **env})
    return ConnectionDirectory(settings, reader=secrets)


def pixxel(**fields: Any) -> dict[str, Any]:
    return {"provider": "pixxel", "base_url": "https://api.pixxel.space", "api_key": "k1", **fields}


def test_a_named_connection_resolves_to_its_document():
    found = directory(Secrets(geo=pixxel(max_in_flight=2, max_creates_per_minute=30))).get(
        "geo", provider="pixxel"
    )
    assert (found.name, found.provider, found.root) == ("geo", "pixxel", "https://api.pixxel.space")
    assert (found.limits.max_in_flight, found.limits.max_creates_per_minute) == (2, 30)
    assert found.key.value() == "k1"
    assert found.secret_name == PREFIX + "geo"


def test_without_a_secret_a_providers_name_is_its_default_from_the_environment():
    secrets = Secrets()
    connections = directory(secrets)
    found = connections.get("pixxel", provider="pixxel")
    assert found.root == "https://api.pixxel.space"
    assert found.key.secret_arn == ENV["PIXXEL_API_KEY_SECRET_ARN"]
    assert not found.limits.any
    # Remembered as absent: the next request on the default reads no secret.
    connections.get("pixxel")
    assert secrets.reads == [(PREFIX + "pixxel", False)]


def test_a_secret_named_after_its_provider_overrides_the_default():
    found = directory(Secrets(pixxel=pixxel(max_in_flight=5))).get("pixxel")
    assert found.limits.max_in_flight == 5
    assert found.secret_name == PREFIX + "pixxel"


def test_a_stack_without_a_prefix_has_only_defaults():
    secrets = Secrets(geo=pixxel())
    connections = directory(secrets, CONNECTIONS_PREFIX="")
    assert connections.get("pixxel").secret_name is None
    with pytest.raises(ConnectionUnknown):
        connections.get("geo")
    assert secrets.reads == []


def test_an_unknown_name_is_refused_naming_connection_and_looked_up_afresh_each_time():
    secrets = Secrets()
    connections = directory(secrets)
    for _ in range(2):
        with pytest.raises(ConnectionUnknown) as refused:
            connections.get("nope", provider="pixxel")
    assert [p.field for p in refused.value.problems] == ["connection"]
    assert len(secrets.reads) == 2  # a refusal is final: never from a cache of absence


def test_another_providers_connection_is_refused():
    doc = {"provider": "matatika", "base_url": "https://app.matatika.com", "token": "t"}
    with pytest.raises(ConnectionUnknown, match="is a matatika connection, not pixxel"):
        directory(Secrets(elt=doc)).get("elt", provider="pixxel")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("not json", "malformed"),
        (pixxel(api_key=None), "exactly one of"),
        (pixxel(token="t"), "exactly one of"),
        ({**pixxel(), "api_key": None, "token": "t"}, "pixxel connections take api_key"),
        (pixxel(colour="blue"), "colour"),
        (pixxel(max_in_flight=0), "max_in_flight"),
        (pixxel(base_url="http://api.pixxel.space"), "must be https"),
        (pixxel(base_url="https://evil.example.com"), "is not allowed"),
        (pixxel(base_url="https://api.pixxel.space/v1"), "scheme and host only"),
    ],
)
def test_a_malformed_connection_is_a_configuration_error_naming_it(document, problem):
    with pytest.raises(ConfigurationError) as error:
        directory(Secrets(geo=document)).get("geo")
    assert "connection 'geo'" in str(error.value)
    assert problem in str(error.value)
    assert "k1" not in str(error.value)


def test_a_malformed_connection_is_read_afresh_once_fixed():
    secrets = Secrets(geo=pixxel(max_in_flight=0))
    connections = directory(secrets)
    with pytest.raises(ConfigurationError):
        connections.get("geo")
    secrets.values[PREFIX + "geo"] = json.dumps(pixxel())
    assert connections.get("geo").key.value() == "k1"
    assert secrets.reads[1] == (PREFIX + "geo", True)  # past Powertools' cache


def test_allowed_hosts_come_from_the_stack():
    doc = pixxel(base_url="http://127.0.0.1:8080")
    with pytest.raises(ConfigurationError, match="not allowed"):
        directory(Secrets(geo=doc)).get("geo")
    found = directory(Secrets(geo=doc), PIXXEL_ALLOWED_HOSTS="127.0.0.1, localhost").get("geo")
    assert found.root == "http://127.0.0.1:8080"


def test_matatika_takes_a_token_or_client_credentials_with_its_token_url_checked():
    base = {"provider": "matatika", "base_url": "https://app.matatika.com"}
    token = directory(Secrets(m=base | {"token": "t0"})).get("m")
    assert token.key.value() == "t0"
    oauth = base | {"client_id": "id", "client_secret": "s", "audience": "https://app"}
    found = directory(Secrets(m=oauth)).get("m")
    assert json.loads(found.key.value()) == {
        "client_id": "id",
        "client_secret": "s",
        "audience": "https://app",
    }
    with pytest.raises(ConfigurationError, match="client_id and client_secret"):
        directory(Secrets(m=base | {"client_id": "id"})).get("m")
    elsewhere = oauth | {"token_url": "https://tokens.example.com/oauth/token"}
    with pytest.raises(ConfigurationError, match="token_url host"):
        directory(Secrets(m=elsewhere)).get("m")


def test_a_description_never_shows_the_credential():
    shown = describe(ConnectionDocument.model_validate(pixxel(max_in_flight=2)))
    assert shown == {
        "provider": "pixxel",
        "base_url": "https://api.pixxel.space/",
        "max_in_flight": 2,
    }
