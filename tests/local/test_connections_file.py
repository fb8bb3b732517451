"""Connections files for the local stack: read as YAML or JSON, pointed at the emulators (no
traffic leaves loopback), refused on one line naming the connection and the field (never a
credential), and stored as the secrets the functions read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from jobrelay.connections import ConnectionDocument
from jobrelay_local.connections_file import (
    ConnectionsFileError,
    LocalConnection,
    add_connections,
    describe,
    parse_connections,
    place,
    read_connections,
)
from jobrelay_local.emulators.matatika import MatatikaEmulator
from jobrelay_local.emulators.pixxel import PixxelEmulator
from moto import mock_aws

pytestmark = pytest.mark.integration

EMULATOR = "http://127.0.0.1:4711"
SECRET = "s3cr3t-never-printed"


def connection(name: str = "geo-team", **entry: Any) -> LocalConnection:
    return parse_connections({"connections": {name: entry}})[0]


def refusal(entry: dict[str, Any], name: str = "geo-team") -> str:
    with pytest.raises(ConnectionsFileError) as raised:
        place(connection(name, **entry), EMULATOR)
    message = str(raised.value)
    assert SECRET not in message
    assert "\n" not in message
    return message


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_yaml_and_json_files_give_the_same_connections(tmp_path: Path) -> None:
    yaml_file = tmp_path / "connections.yaml"
    yaml_file.write_text(
        "connections:\n"
        '  geo-team: {provider: pixxel, base_url: "https://api.pixxel.space", '
        f"api_key: {SECRET}, max_in_flight: 2}}\n"
        "  eval-us:\n    provider: deepset\n    api_key: other-key\n",
        encoding="utf-8",
    )
    json_file = tmp_path / "connections.json"
    json_file.write_text(
        json.dumps(
            {
                "connections": {
                    "geo-team": {
                        "provider": "pixxel",
                        "base_url": "https://api.pixxel.space",
                        "api_key": SECRET,
                        "max_in_flight": 2,
                    },
                    "eval-us": {"provider": "deepset", "api_key": "other-key"},
                }
            }
        ),
        encoding="utf-8",
    )

    from_yaml = read_connections(yaml_file)
    from_json = read_connections(json_file)

    assert [(c.name, c.entry) for c in from_yaml] == [(c.name, c.entry) for c in from_json]
    assert [c.provider for c in from_yaml] == ["pixxel", "deepset"]
    assert SECRET not in repr(from_yaml)


def test_a_public_or_missing_base_url_is_pointed_at_the_emulator() -> None:
    public = place(
        connection(provider="pixxel", base_url="https://api.pixxel.space", api_key="k"), EMULATOR
    )
    missing = place(connection(provider="pixxel", api_key="k"), EMULATOR)
    loopback = place(
        connection(provider="pixxel", base_url="http://localhost:9999", api_key="k"), EMULATOR
    )

    assert public.base_url == missing.base_url == EMULATOR
    assert f"base_url api.pixxel.space -> {EMULATOR}" in str(public.note)
    assert "no base_url" in str(missing.note)
    assert (loopback.base_url, loopback.note) == ("http://localhost:9999", None)
    ConnectionDocument.model_validate_json(public.secret_string())  # what the functions read


def test_a_matatika_oauth_client_gets_the_emulator_token_url() -> None:
    placed = place(
        connection(
            "mt-eval",
            provider="matatika",
            base_url="https://app.matatika.com",
            client_id="eval-client",
            client_secret=SECRET,
            token_url="https://identity.matatika.com/oauth/token",
        ),
        EMULATOR,
    )

    assert placed.value["token_url"] == f"{EMULATOR}/oauth/token"
    assert placed.tenant() == {
        "client_id": "eval-client",
        "client_secret": SECRET,
        "label": "mt-eval",
    }
    assert "token_url identity.matatika.com" in str(placed.note)
    assert SECRET not in str(placed.note)
    assert "client_secret" not in describe(placed)


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        ({"provider": "pixxel", "api_key": SECRET, "max_in_flight": 0}, "max_in_flight"),
        ({"provider": "pixxel", "api_key": SECRET, "max_in_flight": "2"}, "max_in_flight"),
        ({"provider": "pixxel", "api_key": SECRET, "apikey": SECRET}, "apikey"),
        ({"provider": "pixxel", "api_key": SECRET, "token": SECRET}, "exactly one of"),
        ({"provider": "pixxel"}, "exactly one of"),
        (
            {"provider": "pixxel", "client_id": "c", "client_secret": SECRET},
            "pixxel connections take",
        ),
        ({"provider": "matatika", "client_id": "c"}, "client_secret"),
        ({"provider": "nobody", "api_key": SECRET}, "provider"),
        ({"api_key": SECRET}, "provider"),
        (
            {"provider": "deepset", "api_key": SECRET, "base_url": "http://localhost:1/api"},
            "base_url",
        ),
    ],
)
def test_a_bad_connection_is_refused_naming_connection_and_field(
    entry: dict[str, Any], names: str
) -> None:
    message = refusal(entry)

    assert message.startswith("connections: connection 'geo-team': ")
    assert names in message


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ("connections: [geo-team]\n", "connections is an object"),
        ("geo-team: {provider: pixxel}\n", '{"connections"'),
        ("connections:\n  ../etc: {provider: pixxel, api_key: k}\n", "not a connection name"),
        ("connections:\n  geo-team: pixxel\n", "expected an object"),
        (f"connections:\n  geo-team: {{api_key: {SECRET}\n", "not YAML (line"),
    ],
)
def test_a_malformed_file_is_refused_in_one_line(tmp_path: Path, content: str, names: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ConnectionsFileError) as raised:
        read_connections(path)

    assert names in str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_provider_without_an_emulator_takes_only_a_loopback_base_url() -> None:
    given = connection(provider="pixxel", base_url="https://api.pixxel.space", api_key="k")

    with pytest.raises(ConnectionsFileError, match="base_url: pixxel has no emulator"):
        place(given, None)


def test_connections_are_stored_as_the_functions_read_them_and_emulators_accept_them(
    aws: Any,
) -> None:
    # Given a Pixxel emulator of the stack's own and a Matatika one elsewhere
    with PixxelEmulator() as pixxel, MatatikaEmulator() as matatika:
        wanted = parse_connections(
            {
                "connections": {
                    "geo-team": {"provider": "pixxel", "api_key": SECRET, "max_in_flight": 2},
                    "pixxel": {"provider": "pixxel", "api_key": "override-key"},
                    "mt-eval": {"provider": "matatika", "client_id": "c", "client_secret": "s"},
                }
            }
        )
        urls = {"pixxel": pixxel.url, "matatika": matatika.url}

        # When they are added
        placed = add_connections(
            wanted,
            secretsmanager=aws,
            prefix="jobrelay/connections/",
            emulator_url=urls.get,
            own_emulators={"pixxel": pixxel.url},
        )
        pixxel_tenants = pixxel.tenants()
        matatika_tenants = matatika.tenants()

    # Then each is a secret under the prefix holding its document, pointed at loopback
    stored = {
        c.name: json.loads(
            aws.get_secret_value(SecretId=f"jobrelay/connections/{c.name}")["SecretString"]
        )
        for c in placed
    }
    assert stored["geo-team"] == {
        "provider": "pixxel",
        "api_key": SECRET,
        "max_in_flight": 2,
        "base_url": urls["pixxel"],
    }
    assert stored["mt-eval"]["token_url"] == f"{urls['matatika']}/oauth/token"
    # and the stack's own emulator takes each key as a tenant named after its connection;
    # an emulator started elsewhere is left as its owner scripted it
    assert {"geo-team", "pixxel"} <= set(pixxel_tenants)
    assert "mt-eval" not in matatika_tenants


def test_adding_again_replaces_the_document(aws: Any) -> None:
    first = parse_connections({"connections": {"geo": {"provider": "pixxel", "api_key": "a"}}})
    second = parse_connections(
        {"connections": {"geo": {"provider": "pixxel", "api_key": "b", "max_in_flight": 1}}}
    )
    for connections in (first, second):
        add_connections(
            connections,
            secretsmanager=aws,
            prefix="stack/connections/",
            emulator_url=lambda provider: EMULATOR,
            own_emulators={},
        )

    value = aws.get_secret_value(SecretId="stack/connections/geo")["SecretString"]
    assert json.loads(value)["max_in_flight"] == 1


def test_nothing_is_stored_when_one_connection_is_refused(aws: Any) -> None:
    connections = parse_connections(
        {
            "connections": {
                "good": {"provider": "pixxel", "api_key": "a"},
                "bad": {"provider": "pixxel", "api_key": "a", "max_in_flight": -1},
            }
        }
    )

    with pytest.raises(ConnectionsFileError, match="'bad': max_in_flight"):
        add_connections(
            connections,
            secretsmanager=aws,
            prefix="stack/connections/",
            emulator_url=lambda provider: EMULATOR,
            own_emulators={},
        )
    assert aws.list_secrets()["SecretList"] == []
