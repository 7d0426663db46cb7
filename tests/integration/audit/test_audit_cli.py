"""``taskledger audit`` and ``taskledger events export`` against a real store (both engines)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from domain.identity import User
from domain.meta import meta
from domain.reset_tokens import derive_reset_token, reset_key
from ops.bootstrap import WriteSide
from ops.settings import Settings
from tests.fixtures.audit import run_cli

FIRST_HASH = "$argon2id$v=19$m=65536,t=3,p=4$Zmlyc3RzYWx0$Zmlyc3RoYXNoZmlyc3RoYXNo"
SECOND_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2Vjb25kc2FsdA$c2Vjb25kaGFzaHNlY29uZA"


def person(side: WriteSide, settings: Settings) -> tuple[UUID, str]:
    """A user who registered, renamed, asked for a reset and used it; returns the mailed token."""
    user_id = side.identity.register(
        email="Ada@Example.com", display_name="Ada", password_hash=FIRST_HASH,
        meta=meta(None, "register"),
    ).id  # fmt: skip
    user: User = side.identity.get_user(user_id)
    user.rename("Ada [bold]L.[/bold]", meta=meta(user_id, "rename"))
    side.identity.save(user)
    reset = side.identity.request_password_reset(
        "ada@example.com", ttl=timedelta(minutes=30), meta=meta(None, "forgot")
    )
    assert reset is not None
    side.identity.reset_password(reset.claim, password_hash=SECOND_HASH, meta=meta(None, "reset"))
    return user_id, derive_reset_token(reset_key(settings.secret()), reset.claim)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_audit_user_shows_the_account_story_and_no_secret(
    write_side: WriteSide, store_settings: Settings
) -> None:
    user_id, token = person(write_side, store_settings)

    result = run_cli(store_settings, "audit", "user", str(user_id))

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for expected in (
        "UserRegistered", "UserRenamed", "PasswordResetRequested", "PasswordChanged",
        "ada@example.com", "'Ada' → 'Ada [bold]L.[/bold]'", "[redacted]",
    ):  # fmt: skip
        assert expected in out, (expected, out)
    for secret in (FIRST_HASH, SECOND_HASH, token, "argon2", token.split(".")[1]):
        assert secret not in out


def test_audit_task_shows_history_and_past_state(
    write_side: WriteSide, store_settings: Settings
) -> None:
    owner = uuid4()
    task_id = write_side.tasks.create_task(owner_id=owner, title="one", meta=meta(owner, "a")).id
    write_side.tasks.update_task(
        task_id, actor=owner, changes={"title": "two", "labels": ["x"]}, meta=meta(owner, "b")
    )
    between = datetime.now(UTC)
    write_side.tasks.delete_task(task_id, actor=owner, meta=meta(owner, "c"))

    history = run_cli(store_settings, "audit", "task", str(task_id))
    assert history.exit_code == 0, history.stderr
    for expected in ("TaskCreated", "TaskEdited", "TaskDeleted", "'one' → 'two'", str(owner)):
        assert expected in history.stdout

    past = run_cli(store_settings, "audit", "task", str(task_id), "--as-of", between.isoformat())
    assert past.exit_code == 0, past.stderr
    assert "'two'" in past.stdout
    assert "'one'" not in past.stdout

    gone = run_cli(store_settings, "audit", "task", str(task_id), "--as-of", "2100-01-01T00:00Z")
    assert gone.exit_code == 1
    assert "deleted" in one_line(gone.stderr)


def test_audit_refuses_unknown_ids_and_naive_times_in_one_line(
    write_side: WriteSide, store_settings: Settings
) -> None:
    user_id, _ = person(write_side, store_settings)
    owner = uuid4()
    task_id = write_side.tasks.create_task(owner_id=owner, title="t", meta=meta(owner, "a")).id
    cases = [
        (("audit", "task", str(uuid4())), 1),
        (("audit", "task", str(user_id)), 1),  # a user's id is not a task's
        (("audit", "user", str(task_id)), 1),
        (("audit", "user", str(uuid4())), 1),
        (("audit", "task", "nope"), 2),
        (("audit", "task", str(task_id), "--as-of", "2030-01-01T00:00:00"), 2),
        (("audit", "task", str(task_id), "--as-of", "soon"), 2),
        (("events", "export", "--since", "2030-01-01"), 2),
        (("events", "export", "--app", "Mail"), 2),
    ]
    for args, code in cases:
        result = run_cli(store_settings, *args)
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        assert one_line(result.stderr)
        assert result.stdout == ""


def test_events_export_is_json_lines_redacted_and_windowed(
    write_side: WriteSide, store_settings: Settings
) -> None:
    user_id, token = person(write_side, store_settings)
    owner = uuid4()
    task_id = write_side.tasks.create_task(owner_id=owner, title="t", meta=meta(owner, "a")).id
    middle = datetime.now(UTC)
    write_side.tasks.update_task(
        task_id, actor=owner, changes={"status": "done"}, meta=meta(owner, "b")
    )

    result = run_cli(store_settings, "events", "export")

    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["application"], e["type"]) for e in lines] == [
        ("Identity", "UserRegistered"),
        ("Identity", "EmailIndexClaimed"),
        ("Identity", "UserRenamed"),
        ("Identity", "PasswordResetRequested"),
        ("Identity", "PasswordChanged"),
        ("Tasks", "TaskCreated"),
        ("Tasks", "TaskStatusChanged"),
    ]
    for line in lines:
        assert set(line) == {
            "application", "position", "type", "originator_id", "version", "at", "meta", "data",
        }  # fmt: skip
    assert lines[0]["originator_id"] == str(user_id)
    assert lines[0]["data"]["password_hash"] == "[redacted]"
    assert lines[4]["data"]["password_hash"] == "[redacted]"
    assert lines[4]["meta"]["correlation_id"] == "reset"
    assert lines[6]["data"] == {"status": "done"}
    assert (lines[6]["version"], lines[6]["originator_id"]) == (2, str(task_id))
    for secret in (FIRST_HASH, SECOND_HASH, token):
        assert secret not in result.stdout

    tasks_only = run_cli(store_settings, "events", "export", "--app", "tasks")
    assert [json.loads(x)["type"] for x in tasks_only.stdout.splitlines()] == [
        "TaskCreated", "TaskStatusChanged",
    ]  # fmt: skip
    since = run_cli(store_settings, "events", "export", "--since", middle.isoformat())
    assert [json.loads(x)["type"] for x in since.stdout.splitlines()] == ["TaskStatusChanged"]
    until = run_cli(store_settings, "events", "export", "--app", "Tasks", "--until",
                    middle.isoformat())  # fmt: skip
    assert [json.loads(x)["type"] for x in until.stdout.splitlines()] == ["TaskCreated"]
