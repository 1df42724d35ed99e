"""The routing rules file: its model and a validating loader.

Format (``$METIS_HOME/routing.yaml``, or ``METIS_ROUTING_FILE``)::

    schema_version: 1
    rules:
      - name: team-eng-daily-soft-cap
        workspace: eng            # optional: only requests of this workspace
        when:                     # every predicate must hold; {} always holds
          team_cost_today_exceeds_usd: 50
        use: anthropic:claude-haiku-4-5
        reason: team daily soft cap hit; routing to haiku
        fallbacks: [openai:gpt-4o-mini]   # optional, tried in order
    fallbacks:                    # optional: per-model fallback targets
      gpt-4o: [anthropic:claude-sonnet-4-5]
      claude-sonnet-4-5: [bedrock:anthropic.claude-sonnet-4-5-20250929-v1:0]
    aliases:                      # optional: model names clients may ask for
      fast: groq:llama-3.3-70b-versatile

A target's provider is any provider name a workspace may configure
(`metis.gateway.upstreams.catalog.NAME_RE`: ``openai``, ``anthropic``,
``groq``, ``azure``, ``bedrock``, ``my-vllm`` …); whether a workspace has it
is known per request (a target without a credential fails over to the next).

`parse_rules` raises `RoutingConfigError` with one line naming the file, the
rule (index and name) and the field, e.g.
``routing.yaml: rules[1] "cheap": when.team_cost_today_exceeds_usd: must be a
non-negative number``. See docs/routing.md for the predicate reference.
"""

from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec
import yaml

from metis.errors import MetisError
from metis.gateway.upstreams.catalog import NAME_RE
from metis.money import to_nanousd

SCHEMA_VERSION = 1
SHAPES = ("openai", "anthropic", "gemini")

SPEND_PREDICATES = (
    "cost_today_exceeds_usd",
    "user_cost_today_exceeds_usd",
    "team_cost_today_exceeds_usd",
    "team_cost_month_exceeds_usd",
)
PREDICATES = (*SPEND_PREDICATES, "model", "model_in", "workspace", "inbound_shape")
_RULE_FIELDS = ("name", "when", "use", "reason", "fallbacks", "workspace")


class RoutingConfigError(MetisError):
    """The rules file is malformed; the message names the rule and field."""


class Target(msgspec.Struct, frozen=True):
    """Where a request may go: ``provider:model``."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


class When(msgspec.Struct, frozen=True, kw_only=True):
    """A rule's predicates (None = not used). Spend thresholds are nano-USD."""

    cost_today_exceeds: int | None = None
    user_cost_today_exceeds: int | None = None
    team_cost_today_exceeds: int | None = None
    team_cost_month_exceeds: int | None = None
    model: str | None = None
    model_in: frozenset[str] | None = None
    workspace: str | None = None
    inbound_shape: Literal["openai", "anthropic", "gemini"] | None = None


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    when: When
    use: Target
    reason: str
    fallbacks: tuple[Target, ...] = ()
    workspace: str | None = None


class RuleSet(msgspec.Struct, frozen=True, kw_only=True):
    """A validated rules file. ``EMPTY`` routes every request to its own model."""

    rules: tuple[Rule, ...] = ()
    model_fallbacks: dict[str, tuple[Target, ...]] = msgspec.field(default_factory=dict)
    aliases: dict[str, Target] = msgspec.field(default_factory=dict)

    def fallbacks_for(self, target: Target) -> tuple[Target, ...]:
        """Model-level fallbacks of ``target`` (keyed ``provider:model`` or ``model``)."""
        return self.model_fallbacks.get(str(target)) or self.model_fallbacks.get(target.model, ())


EMPTY = RuleSet()


def parse_target(value: Any, where: str) -> Target:
    """Parse ``provider:model`` (the model may hold more ``:``, as Bedrock ids do); raise
    `RoutingConfigError` naming ``where``."""
    if not isinstance(value, str) or ":" not in value:
        raise RoutingConfigError(f"{where}: must be 'provider:model', got {value!r}")
    provider, _, model = value.partition(":")
    provider, model = provider.strip(), model.strip()
    if not NAME_RE.match(provider):
        raise RoutingConfigError(
            f"{where}: invalid provider {provider!r} (a provider name as in "
            "`metis provider-key list`: lower-case letters, digits, '_' and '-')"
        )
    if not model:
        raise RoutingConfigError(f"{where}: model is empty")
    return Target(provider, model)


def _usd(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RoutingConfigError(f"{where}: must be a non-negative number of USD")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise RoutingConfigError(f"{where}: must be a non-negative number of USD") from None
    if not amount.is_finite() or amount < 0:
        raise RoutingConfigError(f"{where}: must be a non-negative number of USD")
    return to_nanousd(amount)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RoutingConfigError(f"{where}: must be a non-empty string")
    return value.strip()


def _targets(value: Any, where: str) -> tuple[Target, ...]:
    if not isinstance(value, list):
        raise RoutingConfigError(f"{where}: must be a list of 'provider:model'")
    return tuple(parse_target(v, f"{where}[{i}]") for i, v in enumerate(value))


def _when(value: Any, where: str) -> When:
    if value is None:
        return When()
    if not isinstance(value, dict):
        raise RoutingConfigError(f"{where}: must be a mapping of predicates")
    kw: dict[str, Any] = {}
    for key, v in value.items():
        f = f"{where}.{key}"
        if key in SPEND_PREDICATES:
            kw[str(key).removesuffix("_usd")] = _usd(v, f)
        elif key in ("model", "workspace"):
            kw[key] = _str(v, f)
        elif key == "model_in":
            if not isinstance(v, list) or not v:
                raise RoutingConfigError(f"{f}: must be a non-empty list of model names")
            kw[key] = frozenset(_str(m, f"{f}[{i}]") for i, m in enumerate(v))
        elif key == "inbound_shape":
            if v not in SHAPES:
                raise RoutingConfigError(f"{f}: must be one of {', '.join(SHAPES)}")
            kw[key] = v
        else:
            raise RoutingConfigError(f"{f}: unknown predicate (known: {', '.join(PREDICATES)})")
    return When(**kw)


def _rule(raw: Any, i: int, names: set[str]) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(raw, dict):
        raise RoutingConfigError(f"{where}: must be a mapping")
    if isinstance(raw.get("name"), str):
        where = f'{where} "{raw["name"]}"'
    for key in raw:
        if key not in _RULE_FIELDS:
            raise RoutingConfigError(
                f"{where}: unknown field {key!r} (known: {', '.join(_RULE_FIELDS)})"
            )
    name = _str(raw.get("name"), f"{where}.name")
    if name in names:
        raise RoutingConfigError(f"{where}.name: duplicate rule name {name!r}")
    names.add(name)
    if "use" not in raw:
        raise RoutingConfigError(f"{where}.use: required ('provider:model')")
    use = parse_target(raw["use"], f"{where}.use")
    reason = raw.get("reason")
    reason = f"rule {name}" if reason is None else _str(reason, f"{where}.reason")
    fallbacks = _targets(raw["fallbacks"], f"{where}.fallbacks") if "fallbacks" in raw else ()
    workspace = raw.get("workspace")
    return Rule(
        name=name,
        when=_when(raw.get("when"), f"{where}.when"),
        use=use,
        reason=reason,
        fallbacks=fallbacks,
        workspace=None if workspace is None else _str(workspace, f"{where}.workspace"),
    )


def parse_rules(text: str, source: str = "routing.yaml") -> RuleSet:
    """Validate a rules file's text; raise `RoutingConfigError` prefixed with ``source``."""
    try:
        return _parse(text)
    except RoutingConfigError as exc:
        raise RoutingConfigError(f"{source}: {exc.message}") from None


def _parse(text: str) -> RuleSet:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RoutingConfigError(f"invalid YAML{at}: {problem}") from None
    if not isinstance(doc, dict):
        raise RoutingConfigError("must be a mapping with schema_version and rules")
    for key in doc:
        if key not in ("schema_version", "rules", "fallbacks", "aliases"):
            raise RoutingConfigError(
                f"unknown top-level field {key!r} (known: schema_version, rules, fallbacks, "
                "aliases)"
            )
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RoutingConfigError(f"schema_version: must be {SCHEMA_VERSION}, got {version!r}")
    raw_rules = doc.get("rules")
    raw_rules = [] if raw_rules is None else raw_rules
    if not isinstance(raw_rules, list):
        raise RoutingConfigError("rules: must be a list")
    names: set[str] = set()
    rules = tuple(_rule(r, i, names) for i, r in enumerate(raw_rules))
    raw_fb = doc.get("fallbacks")
    raw_fb = {} if raw_fb is None else raw_fb
    if not isinstance(raw_fb, dict):
        raise RoutingConfigError("fallbacks: must be a mapping of model -> ['provider:model', ...]")
    model_fallbacks: dict[str, tuple[Target, ...]] = {}
    for model, targets in raw_fb.items():
        key = _str(model, "fallbacks key")
        model_fallbacks[key] = _targets(targets, f"fallbacks.{key}")
    raw_aliases = doc.get("aliases")
    raw_aliases = {} if raw_aliases is None else raw_aliases
    if not isinstance(raw_aliases, dict):
        raise RoutingConfigError("aliases: must be a mapping of name -> 'provider:model'")
    aliases: dict[str, Target] = {}
    for name, target in raw_aliases.items():
        key = _str(name, "aliases key")
        aliases[key] = parse_target(target, f"aliases.{key}")
    return RuleSet(rules=rules, model_fallbacks=model_fallbacks, aliases=aliases)
