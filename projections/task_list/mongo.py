"""The task list in MongoDB: one collection per generation (``task_list_v{N}_tasks``).

The projector writes to the primary, one unordered ``bulk_write`` per batch with a version
guard per row; the query side reads with ``secondaryPreferred`` inside one causally consistent
session per request, so the checkpoint it waited for and the rows it then reads agree even on a
lagging secondary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from pymongo import ASCENDING, DESCENDING, ReadPreference, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure

from domain.errors import Unavailable
from projections.consistent_reads import CODECS, checkpoints_for_reads, read_checkpoint
from projections.envelope import collection_name
from projections.mongo_writes import duplicate_key_indexes
from projections.task_list.changes import TaskChange
from projections.task_list.model import (
    NAME,
    NO_DUE_DATE,
    SORT_FIELDS,
    STATUSES,
    After,
    TaskCounts,
    TaskFilter,
    TaskPage,
    TaskQuery,
    TaskRow,
    document_row,
)


def tasks_collection(generation: int) -> str:
    return collection_name(NAME, generation, "tasks")


def _indexes() -> list[tuple[str, list[tuple[str, int]]]]:
    """Owner first (every query names one), then the sort key, then _id as the tiebreaker that
    keeps keyset pages stable; due-date ranges use the ``due_sort`` ones. Kept few on purpose:
    every index costs each projector write. On MongoDB, if status-filtered lists dominate, add
    (owner_id, status, <sort key>, _id) next."""
    indexes: list[tuple[str, list[tuple[str, int]]]] = [
        (f"owner_{field}", [("owner_id", ASCENDING), (field, ASCENDING), ("_id", ASCENDING)])
        for field in SORT_FIELDS.values()
    ]
    indexes.append(("owner_labels", [("owner_id", ASCENDING), ("labels", ASCENDING)]))
    return indexes


def filter_document(owner_id: UUID, flt: TaskFilter) -> dict[str, Any]:
    query: dict[str, Any] = {"owner_id": str(owner_id), "deleted": False}
    if flt.statuses:
        query["status"] = flt.statuses[0] if len(flt.statuses) == 1 else {"$in": list(flt.statuses)}
    if flt.priorities:
        query["priority"] = {"$in": list(flt.priorities)}
    if flt.labels:
        query["labels"] = {"$all": list(flt.labels)}
    pattern = flt.text_pattern()
    if pattern is not None:
        regex = {"$regex": pattern, "$options": "i"}
        query["$or"] = [{"title": regex}, {"description": regex}]
    # On due_sort, which an index leads with; undated tasks (NO_DUE_DATE) never match a range.
    if flt.due_before is not None or flt.due_after is not None:
        before = NO_DUE_DATE if flt.due_before is None else min(flt.due_before, NO_DUE_DATE)
        query["due_sort"] = {"$lt": before}
        if flt.due_after is not None:
            query["due_sort"]["$gt"] = flt.due_after
    return query


def keyset(query: dict[str, Any], field: str, descending: bool, after: After) -> dict[str, Any]:
    """Rows strictly after ``after`` in (field, _id) order. The plain range on ``field`` bounds
    the index scan; the ``$or`` settles ties on ``_id``."""
    past, strictly = ("$lte", "$lt") if descending else ("$gte", "$gt")
    bound = {field: {past: after.value}}
    ties = {"$or": [{field: {strictly: after.value}}, {"_id": {strictly: str(after.task_id)}}]}
    return {"$and": [query, bound, ties]}


class MongoTaskCollection:
    """One generation's collection: the projector's writes, and reads inside a session."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], generation: int) -> None:
        self.generation = generation
        self.name = tasks_collection(generation)
        self._db = db.with_options(codec_options=CODECS)
        self._primary: AsyncCollection[dict[str, Any]] = self._db[self.name]
        self._reads = self._primary.with_options(read_preference=ReadPreference.SECONDARY_PREFERRED)

    async def prepare(self) -> None:
        for name, keys in _indexes():
            await self._primary.create_index(keys, name=name)

    async def write(self, changes: Sequence[TaskChange]) -> None:
        """New rows go in as one ``insert_many`` (far cheaper than upserts); every other change,
        and any new row that exists already (a replay), as one ``bulk_write`` of version-guarded
        updates. So a batch costs at most two round trips, whatever its size."""
        fresh = [c for c in changes if c.created]
        updates = [c for c in changes if not c.created]
        if fresh:
            try:
                await self._primary.insert_many(
                    [{"_id": str(c.task_id), **c.fields} for c in fresh], ordered=False
                )
            except BulkWriteError as exc:
                updates.extend(fresh[i] for i in duplicate_key_indexes(exc))
        if not updates:
            return
        ops = [
            UpdateOne(
                {"_id": str(c.task_id), "version": {"$lt": c.version}},
                {"$set": c.fields},
                upsert=c.created,
            )
            for c in updates
        ]
        try:
            await self._primary.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # Upserting past a failed guard collides with the newer row on _id: a stale write.
            duplicate_key_indexes(exc)

    async def owners(self, task_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        cursor = self._primary.find({"_id": {"$in": [str(t) for t in task_ids]}}, {"owner_id": 1})
        return {UUID(doc["_id"]): UUID(doc["owner_id"]) async for doc in cursor}

    async def drop(self) -> None:
        await self._primary.drop()

    async def documents(self) -> list[dict[str, Any]]:
        """Every stored document, tombstones included, by id (tests compare whole stores)."""
        return [doc async for doc in self._primary.find({}).sort("_id", ASCENDING)]

    async def get(
        self, owner_id: UUID, task_id: UUID, session: AsyncClientSession | None = None
    ) -> TaskRow | None:
        doc = await self._reads.find_one(
            {"_id": str(task_id), "owner_id": str(owner_id), "deleted": False}, session=session
        )
        return None if doc is None else document_row(doc)

    async def page(
        self, owner_id: UUID, query: TaskQuery, session: AsyncClientSession | None = None
    ) -> TaskPage:
        field = query.sort.field
        direction = DESCENDING if query.sort.descending else ASCENDING
        found = filter_document(owner_id, query.filter)
        if query.after is not None:
            found = keyset(found, field, query.sort.descending, query.after)
        cursor = (
            self._reads.find(found, session=session)
            .sort([(field, direction), ("_id", direction)])
            .limit(query.limit + 1)
        )
        rows = [document_row(doc) async for doc in cursor]
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        last = rows[-1] if more else None
        return TaskPage(
            tuple(rows), None if last is None else After(query.sort.value(last), last.id)
        )

    async def counts(
        self, owner_id: UUID, now: datetime, session: AsyncClientSession | None = None
    ) -> TaskCounts:
        owner = {"owner_id": str(owner_id), "deleted": False}
        by_status = {
            doc["_id"]: int(doc["n"])
            async for doc in await self._reads.aggregate(
                [{"$match": owner}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}],
                session=session,
            )
        }
        overdue = await self._reads.count_documents(
            {**owner, "status": {"$ne": "done"}, "due_date": {"$lt": now}}, session=session
        )
        return TaskCounts(**{s: by_status.get(s, 0) for s in STATUSES}, overdue=overdue)


class Generations(Protocol):
    async def of(self, name: str) -> int: ...


class MongoTaskReader:
    """One request's consistent view: one generation, one causally consistent session."""

    def __init__(
        self,
        tasks: MongoTaskCollection,
        checkpoints: AsyncCollection[dict[str, Any]],
        session: AsyncClientSession,
    ) -> None:
        self._tasks = tasks
        self._checkpoints = checkpoints
        self._session = session
        self.generation = tasks.generation

    async def checkpoint(self, upstream: str) -> int:
        return await read_checkpoint(
            self._checkpoints, NAME, self.generation, upstream, self._session
        )

    async def get(self, owner_id: UUID, task_id: UUID) -> TaskRow | None:
        return await self._tasks.get(owner_id, task_id, self._session)

    async def page(self, owner_id: UUID, query: TaskQuery) -> TaskPage:
        return await self._tasks.page(owner_id, query, self._session)

    async def counts(self, owner_id: UUID, now: datetime) -> TaskCounts:
        return await self._tasks.counts(owner_id, now, self._session)


class MongoTaskReadModel:
    """The query side's entry: follows the live generation (the alias) of ``task_list``.

    MongoDB not answering (no server, network timeout, failover) surfaces as
    ``Unavailable("document store")`` (503); any other MongoDB error is a bug, a 500.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]], generations: Generations) -> None:
        self._db = db
        self._generations = generations
        self._checkpoints = checkpoints_for_reads(db)
        self._collections: dict[int, MongoTaskCollection] = {}

    async def generation(self) -> int:
        try:
            return await self._generations.of(NAME)
        except ConnectionFailure as exc:
            raise Unavailable("document store") from exc

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[MongoTaskReader]:
        try:
            generation = await self._generations.of(NAME)
            tasks = self._collections.get(generation)
            if tasks is None:
                tasks = self._collections[generation] = MongoTaskCollection(self._db, generation)
            async with self._db.client.start_session(causal_consistency=True) as session:
                yield MongoTaskReader(tasks, self._checkpoints, session)
        except ConnectionFailure as exc:
            raise Unavailable("document store") from exc
