"""Settings from the environment: provider base URLs are https unless loopback."""

from __future__ import annotations

import pytest
from jobrelay.errors import ConfigurationError
from jobrelay.settings import settings_from_env


def test_settings_read_providers_and_numbers():
    settings = settings_from_env(
        {
            "DEEPSET_BASE_URL": "https://api.cloud.deepset.ai",
            "DEEPSET_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:d",
            "MATATIKA_BASE_URL": "http://127.0.0.1:8083",
            "POLL_INTERVAL_SECONDS": "15",
        }
    )
    assert settings.provider("deepset").root == "https://api.cloud.deepset.ai"
    assert settings.provider("matatika").root == "http://127.0.0.1:8083"
    assert settings.poll_interval_seconds == 15
    with pytest.raises(ConfigurationError):
        settings.provider("pixxel")


@pytest.mark.parametrize(
    "url",
    ["http://api.pixxel.space", "https://api.pixxel.space/v0", "https://x.example/?a=1", "ftp://x"],
)
def test_settings_refuse_plain_http_off_loopback_and_urls_with_paths(url):
    with pytest.raises(ConfigurationError):
        settings_from_env({"PIXXEL_BASE_URL": url})
