"""Models the simulator serves, and small helpers shared by both providers.

Any model genai-prices can price for the provider is accepted (an unknown
model gets the provider's "model not found" error, as for a real account).
OpenAI answers with the dated snapshot of an alias (``gpt-4o-mini`` ->
``gpt-4o-mini-2024-07-18``), as the real API does, and its usage reports name
the snapshot. Anthropic echoes the requested model id.
"""

import re
from typing import Any

_CLAUDE_VERSION = re.compile(r"^claude-[a-z]+-(\d+)(?:-(\d{1,2})(?!\d))?")
_TOOL_TRIGGER = re.compile(r"\buse (?:a )?tool\b", re.IGNORECASE)

OPENAI_SNAPSHOTS: dict[str, str] = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "o4-mini": "o4-mini-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
    "gpt-5-nano": "gpt-5-nano-2025-08-07",
}
OPENAI_EMBEDDING_DIMS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OPENAI_MODELS: tuple[str, ...] = (
    *OPENAI_SNAPSHOTS.keys(),
    *OPENAI_SNAPSHOTS.values(),
    *OPENAI_EMBEDDING_DIMS.keys(),
)
ANTHROPIC_MODELS: dict[str, str] = {
    "claude-sonnet-4-6": "Claude Sonnet 4.6",
    "claude-opus-4-5-20251101": "Claude Opus 4.5",
    "claude-haiku-4-5-20251001": "Claude Haiku 4.5",
    "claude-sonnet-4-5-20250929": "Claude Sonnet 4.5",
    "claude-opus-4-1-20250805": "Claude Opus 4.1",
}
MODEL_CREATED = 1_700_000_000


def accepts_mid_conversation_system(model: str) -> bool:
    """Whether an Anthropic model accepts ``role: "system"`` messages inside ``messages``.

    Anthropic documents mid-conversation system messages as generally available
    (no beta header) from Claude Opus 4.8 on; earlier models answer 400 ("role
    'system' is not supported on this model"). Claude Code 2.1.332 gates them the
    same way (by model; its ``mid-conversation-system-2026-04-07`` beta is marked
    generally available and not sent). Versions are read from the id:
    ``claude-<family>-<major>[-<minor>]`` (``claude-opus-4-8``, ``claude-fable-5``);
    a date after the major (``claude-opus-4-20250514``) means minor 0; the
    legacy ``claude-3-…`` / ``claude-2`` ids are earlier models.
    """
    m = _CLAUDE_VERSION.match(model.lower())
    if m is None:
        return False
    return (int(m.group(1)), int(m.group(2) or 0)) >= (4, 8)


def openai_served_model(model: str) -> str:
    return OPENAI_SNAPSHOTS.get(model, model)


def args_from_schema(schema: Any) -> Any:
    """A deterministic value that satisfies a (simple) JSON schema.

    Objects get every required property (or every property when none is
    required); enums their first value; strings ``"sim"``; numbers 1; booleans true.
    """
    if not isinstance(schema, dict):
        return {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t == "object" or (t is None and "properties" in schema):
        props = schema.get("properties") or {}
        req = schema.get("required")
        names = req if isinstance(req, list) and req else list(props)
        return {n: args_from_schema(props.get(n, {})) for n in names if isinstance(n, str)}
    if t == "array":
        return [args_from_schema(schema.get("items", {}))] if schema.get("minItems") else []
    if t == "integer":
        return 1
    if t == "number":
        return 1
    if t == "boolean":
        return True
    if t == "null":
        return None
    return "sim"


def asks_for_tool(text: str) -> bool:
    """The simulator's tool trigger phrase, "use tool" / "use a tool", as whole words.

    Whole words, so a client's own text that happens to contain the letters
    (Claude Code's reminders say "use ToolSearch") does not trigger a call.
    """
    return _TOOL_TRIGGER.search(text) is not None


def last_text_block(content: Any) -> str:
    """The text of the last text block of a message content (the whole string if a string).

    Agent clients put their own context in earlier blocks of the user's message
    (Claude Code: ``<system-reminder>`` blocks, then the user's prompt last), so
    the simulator's tool trigger reads only the last text block.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        for b in reversed(content):
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str):
                return str(b["text"])
    return ""


def last_text(content: Any) -> str:
    """Concatenated text of a message content (string or blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            b.get("text", "")
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
    return ""
