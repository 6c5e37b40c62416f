"""Shared fixtures. tests/ is not a package: pytest puts it on sys.path (rootdir conftest), so
helper modules are imported by plain name (`import motoserver`, `import fakes`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import motoserver
import pytest

# Variables of boto3's chain that would let a developer's own AWS setup leak into a test.
_LEAKY_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3 sees no ~/.aws files, no instance metadata and none of the developer's AWS_*
    variables that pick a profile, endpoint, retry policy or extra credentials."""
    for name in _LEAKY_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the whole session (stopping one takes ~0.5 s); tests reset it."""
    with motoserver.running_moto_server() as url:
        yield url


@pytest.fixture
def moto_url(moto_server: str, aws_isolated: None,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A freshly reset moto server, with boto3's environment pointed at it (fake credentials,
    us-east-1, AWS_ENDPOINT_URL) and AWS_PROFILE removed; yields its URL."""
    motoserver.reset(moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield moto_server
