"""Errors raised while translating between the OpenAI and Anthropic shapes.

Both are `MetisError`s with a one-line message. The gateway maps them to a
400 in the inbound shape's error envelope (a request the target provider
cannot serve faithfully is refused instead of answered wrongly); a
`TranslationError` raised on an *upstream* payload is the upstream's fault
and becomes a 502.
"""

from metis.errors import MetisError


class TranslationError(MetisError):
    """The payload is malformed for its shape; the message names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedFeature(TranslationError):
    """The request uses a feature the other shape cannot express faithfully.

    ``feature`` names it (``n``, ``logprobs``, ``response_format.json_schema`` …)
    so the 400 error can say exactly what to remove.
    """

    def __init__(self, feature: str, target: str, detail: str = "") -> None:
        msg = f"{feature} is not supported when routing to {target}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, field=feature)
        self.feature = feature
        self.target = target
