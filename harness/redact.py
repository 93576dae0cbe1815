"""Credentials kept out of what a run writes and logs: `user:password@` in a URL (an S3
endpoint's, an s3:// path's) becomes `user:***@`, and options named like secrets become `***`.

No heavy imports: harness/__init__.py puts the log filter on the "scan" logger.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

# user:password@ after a URL's scheme (the password may hold "/" and ":"), or at the start of a
# word (an endpoint without a scheme: "user:pw@minio:9000"); "user@host" has no password to hide.
_USERINFO = (re.compile(r"(?P<start>://)(?P<user>[^\s:/@'\"]*):(?P<secret>[^\s@'\"]+)@"),
             re.compile(r"(?P<start>(?<![^\s'\"(=,\[]))(?P<user>[^\s:/@'\"]+):(?P<secret>[^\s/@'\"]+)@"))
SECRET_NAME = re.compile(r"key|secret|token|passw|credential", re.IGNORECASE)
HIDDEN = "***"


def redact(text: str) -> str:
    """`text` with the password of every `user:password@` replaced by ***."""
    for pattern in _USERINFO:
        text = pattern.sub(lambda m: f"{m['start']}{m['user']}:{HIDDEN}@", text)
    return text


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with the values of secret-like names (access_key, secret_key, session_token,
    password, ...) replaced by ***, and credentials in the other text values redacted."""
    return {name: HIDDEN if SECRET_NAME.search(name) else redact(value) if isinstance(value, str) else value
            for name, value in options.items()}


class RedactFilter(logging.Filter):
    """A logging filter that redacts each record's message (its arguments merged into it first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
