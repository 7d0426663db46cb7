"""The broker's wire format: plain JSON that round-trips, readable without FastStream."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ops.messaging import PlainJsonFormat

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=50, derandomize=True)
@given(body=st.dictionaries(st.text(), json_values, max_size=6), message_id=st.text(max_size=20))
async def test_a_json_body_round_trips_and_is_embedded_as_json(
    body: dict[str, Any], message_id: str
) -> None:
    raw = await PlainJsonFormat.encode(
        message=body, reply_to=None, headers={"message_id": message_id}, correlation_id="c-1"
    )
    envelope = json.loads(raw)
    assert envelope["data"] == body  # an object, not a string holding JSON
    data, headers = PlainJsonFormat.parse(raw)
    assert json.loads(data) == body
    assert headers["message_id"] == message_id
    assert headers["correlation_id"] == "c-1"


async def test_a_text_body_stays_text() -> None:
    raw = await PlainJsonFormat.encode(
        message="hello", reply_to=None, headers=None, correlation_id="c-2"
    )
    assert PlainJsonFormat.parse(raw)[0] == b"hello"


def test_bytes_that_are_not_our_envelope_pass_through_unchanged() -> None:
    assert PlainJsonFormat.parse(b"not json") == (b"not json", {})
    assert PlainJsonFormat.parse(b'{"a": 1}') == (b'{"a": 1}', {})
