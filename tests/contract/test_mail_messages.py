"""The integration-message contract: what the relay publishes, the mailer reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from consumers import messages as consumed
from projections.mail_relay import messages as published

PAIRS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (published.PasswordResetRequested, consumed.PasswordResetRequested),
    (published.UserRegistered, consumed.UserRegistered),
]


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
def test_every_field_the_consumer_needs_is_published_with_the_same_type(
    producer: type[BaseModel], consumer: type[BaseModel]
) -> None:
    assert producer.__name__ == consumer.__name__  # the stream is named after it
    made = producer.model_json_schema()["properties"]
    read = consumer.model_json_schema()["properties"]
    assert set(read) <= set(made)
    for name, schema in read.items():
        assert _shape(schema) == _shape(made[name]), name


def _shape(schema: dict[str, Any]) -> Any:
    if "anyOf" in schema:
        return sorted(json.dumps(_shape(s)) for s in schema["anyOf"])
    return (schema.get("type"), schema.get("format"))


@pytest.mark.parametrize(("producer", "consumer"), PAIRS)
@settings(max_examples=30, derandomize=True)
@given(data=st.data())
def test_any_published_message_reads_back_equal(
    producer: type[BaseModel], consumer: type[BaseModel], data: st.DataObject
) -> None:
    message = data.draw(st.builds(producer))
    read = consumer.model_validate_json(message.model_dump_json())
    fields = type(read).model_fields
    assert read.model_dump() == {k: v for k, v in message.model_dump().items() if k in fields}
