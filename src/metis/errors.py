"""Errors a user can act on.

Every failure the CLI or an HTTP handler reports to a person is a `MetisError`
(or a subclass): its message is one line naming what was wrong. The CLI prints
it as ``error: <message>`` with a non-zero exit; HTTP layers map it to a 4xx.
Anything else that escapes is a bug.

Messages often quote what the user gave ("unknown gateway key '…'"). When
that was a secret by mistake (a ``gw_`` key where its id belongs, a provider
key where a name belongs), the message keeps only what Metis shows of such a
secret anyway (`mask_secrets`), so it does not travel on into terminals, HTTP
answers and logs.
"""

import re

# Metis's own secrets (gw_/mit_/mta_ + 256 random bits) and provider keys (sk-…).
_SECRET_LIKE = re.compile(r"\b(?:gw|mit|mta)_[A-Za-z0-9_-]{16,}|\bsk-[A-Za-z0-9_-]{16,}")


def mask_secrets(text: str) -> str:
    """``text`` with secret-looking tokens cut to their display form (prefix or last 4)."""

    def cut(m: re.Match[str]) -> str:
        v = m.group(0)
        return f"sk-…{v[-4:]}" if v.startswith("sk-") else v[:10] + "…"

    return _SECRET_LIKE.sub(cut, text)


class MetisError(Exception):
    """A user-facing error with a one-line message (secret-looking tokens masked)."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        message = mask_secrets(message)
        super().__init__(message)
        self.message = message


class ConfigError(MetisError):
    """A setting is missing or malformed; the message names the variable."""


class NotFoundError(MetisError):
    """A named thing (workspace, user, key...) does not exist."""


class ConflictError(MetisError):
    """The thing already exists or the change conflicts with stored state."""


class ValidationError(MetisError):
    """Input failed validation; the message names the field."""
