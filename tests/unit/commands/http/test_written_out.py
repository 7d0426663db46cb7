"""The command response documents what a write that changed nothing answers."""

from __future__ import annotations

import json

from commands.http.tasks import WrittenOut


def test_openapi_says_a_write_that_changed_nothing_has_no_position() -> None:
    position = WrittenOut.model_json_schema()["properties"]["position"]
    assert "null" in position["description"]
    assert "changed nothing" in position["description"]


def test_the_response_built_without_revalidation_is_what_written_out_documents() -> None:
    """Routes send their own JSON (no response-model pass): it must still be a WrittenOut."""
    from uuid import uuid4

    from commands.http.tasks import _out
    from commands.written import Written

    for position in (7, None):
        written = Written(uuid4(), 3, position)
        response = _out(written, 201, Location="/v1/tasks/x")
        assert response.status_code == 201
        assert response.headers["etag"] == '"3"'
        assert response.headers["location"] == "/v1/tasks/x"
        assert response.headers["content-type"] == "application/json"
        parsed = WrittenOut.model_validate_json(bytes(response.body))
        assert parsed == WrittenOut(id=written.id, version=3, position=position)
        assert set(json.loads(bytes(response.body))) == set(WrittenOut.model_fields)
