"""Errors a user can act on.

Every failure the CLI or an HTTP handler reports to a person is a `MetisError`
(or a subclass): its message is one line naming what was wrong. The CLI prints
it as ``error: <message>`` with a non-zero exit; HTTP layers map it to a 4xx.
Anything else that escapes is a bug.
"""


class MetisError(Exception):
    """A user-facing error with a one-line message."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
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
