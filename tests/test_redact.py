"""harness.redact: no password in run.json or in a log line."""

from __future__ import annotations

import logging

import pytest

import harness  # noqa: F401 - puts the filter on the "scan" logger
from harness.redact import redact, redact_options


@pytest.mark.parametrize("text, shown", [
    ("s3://AKIA:abc/def+g@bucket/ohlcv", "s3://AKIA:***@bucket/ohlcv"),  # a secret key may hold "/"
    ("http://user:pw@minio:9000", "http://user:***@minio:9000"),
    ("http://:pw@minio:9000", "http://:***@minio:9000"),
    ("user:pw@minio:9000", "user:***@minio:9000"),            # an endpoint without a scheme
    ("cannot reach 'user:pw@minio:9000/x'", "cannot reach 'user:***@minio:9000/x'"),
    ("a:1@b and c://d:2@e", "a:***@b and c://d:***@e"),
    # nothing to hide
    ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"), ("user@host", "user@host"),
    ("s3://bucket/a@b", "s3://bucket/a@b"), ("2024-01-01 12:30:00", "2024-01-01 12:30:00"),
    ("/data/a:b@c", "/data/a:b@c"),
])
def test_the_password_of_a_url_is_hidden(text, shown):
    assert redact(text) == shown


def test_options_named_like_secrets_are_hidden():
    assert redact_options({"endpoint_override": "u:p@h:9000", "access_key": "A", "secret_key": "S",
                           "session_token": "T", "password": "P", "scheme": "http", "anonymous": True}) == {
        "endpoint_override": "u:***@h:9000", "access_key": "***", "secret_key": "***", "session_token": "***",
        "password": "***", "scheme": "http", "anonymous": True}


def test_no_log_line_of_the_scan_shows_a_password(caplog):
    with caplog.at_level(logging.INFO, logger="scan"):
        logging.getLogger("scan").info("Ignored %d entries under %s", 2, "s3://me:hunter2@bucket/ohlcv")
        logging.getLogger("scan").warning("endpoint %r", "me:hunter2@127.0.0.1:9000")
    assert caplog.messages == ["Ignored 2 entries under s3://me:***@bucket/ohlcv", "endpoint 'me:***@127.0.0.1:9000'"]
