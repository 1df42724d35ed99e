"""`value_for` yields values that validate against the schemas clients really send."""

from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from metis.simulator.schema_values import value_for


class Address(BaseModel):
    street: str
    zip: str = Field(min_length=5, max_length=5)


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, le=130)
    score: float = Field(gt=0.5, lt=1.0)
    email: str = Field(json_schema_extra={"format": "email"})
    tags: list[str] = Field(min_length=2)
    home: Address
    work: Address | None
    kind: Literal["a", "b"]
    extra: dict[str, int]


SCHEMAS: list[Any] = [
    Person.model_json_schema(),  # $defs/$ref, anyOf with null, const/enum, bounds
    {"type": "object", "properties": {"x": {"type": ["string", "null"]}}, "required": ["x"]},
    {
        "allOf": [
            {"$ref": "#/$defs/a"},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ],
        "$defs": {
            "a": {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}
        },
    },
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
    {"type": "integer", "exclusiveMinimum": 3, "multipleOf": 5},
    {"type": "string", "format": "date-time"},
    {"oneOf": [{"type": "null"}, {"const": 7}]},
    {"type": "object", "properties": {"self": {"$ref": "#"}}},  # recursive, optional
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_value_validates(schema: Any) -> None:
    jsonschema.validate(value_for(schema), schema)


def test_pydantic_model_round_trip() -> None:
    p = Person.model_validate(value_for(Person.model_json_schema()))
    assert p.age == 18 and len(p.tags) == 2 and p.kind == "a"


def test_deterministic() -> None:
    s = Person.model_json_schema()
    assert value_for(s) == value_for(s)
