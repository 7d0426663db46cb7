"""The command response documents what a write that changed nothing answers."""

from __future__ import annotations

from commands.http.tasks import WrittenOut


def test_openapi_says_a_write_that_changed_nothing_has_no_position() -> None:
    position = WrittenOut.model_json_schema()["properties"]["position"]
    assert "null" in position["description"]
    assert "changed nothing" in position["description"]
