"""errors.redact_urls: no URL userinfo and no presigned query string survives in a message,
while every other part of the message (and URLs without secrets) stays as it was."""

from __future__ import annotations

import pytest

from reconciler import errors


@pytest.mark.parametrize(("text", "expected"), [
    ("cannot reach the AWS endpoint http://user:pw@127.0.0.1:9/ for ListLayers",
     "cannot reach the AWS endpoint http://***@127.0.0.1:9/ for ListLayers"),
    ('Could not connect to the endpoint URL: "https://token@example.com/2018-10-31/layers"',
     'Could not connect to the endpoint URL: "https://***@example.com/2018-10-31/layers"'),
    ("get https://b.s3.amazonaws.com/k.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256"
     "&X-Amz-Credential=AKIA%2F20260101&X-Amz-Signature=abc123 failed",
     "get https://b.s3.amazonaws.com/k.zip?*** failed"),
    ("https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Signature=x&Expires=1",
     "https://b.s3.amazonaws.com/k?***"),
], ids=["userinfo", "quoted-userinfo", "presigned-v4", "presigned-v2"])
def test_secrets_of_urls_are_redacted(text: str, expected: str) -> None:
    """Userinfo and secret-bearing query strings become ***."""
    assert errors.redact_urls(text) == expected


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:5000/2018-10-31/layers/x/versions?MaxItems=50",
    "s3://team-state/layers/layers.lock.json",
    "layers.yaml:3:5: layers.x: no such folder",
    "send mail to someone@example.com",
])
def test_text_without_secrets_is_unchanged(text: str) -> None:
    """A message with no secret in a URL is returned as it is."""
    assert errors.redact_urls(text) == text
