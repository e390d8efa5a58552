"""The job's identifiers: one deterministic taskUUID per attempt, fresh run ids."""

from __future__ import annotations

import uuid

from pipeline.state.ids import new_run_id, task_uuid_for

NS = "6f1c1f8e-3a59-4e0b-9d51-2d4a8f0f7c11"


class TestTaskUuid:
    def test_deterministic_and_distinct(self) -> None:
        """Same (namespace, fingerprint, attempt) gives the same UUIDv5; anything else a new one."""
        a = task_uuid_for(NS, "fp", 1)
        assert a == task_uuid_for(NS, "fp", 1)
        assert uuid.UUID(a).version == 5
        others = {
            task_uuid_for(NS, "fp", 2),
            task_uuid_for(NS, "fp2", 1),
            task_uuid_for(str(uuid.uuid4()), "fp", 1),
        }
        assert a not in others and len(others) == 3
        assert a == str(uuid.uuid5(uuid.UUID(NS), "fp:1"))

    def test_the_01_task_uuids_are_kept(self) -> None:
        """A task 0.1 sent has the same UUID today: its namespace, fingerprint and attempt give it."""
        namespace = "aa988d1f-e6f4-4136-86eb-fded88778dd2"  # tests/data/v01_job's first submitted line
        fp = "3f9cfc00bf48c374bafde3637752692a085b34e771b417c13d77bc2791696526"
        assert task_uuid_for(namespace, fp, 1) == "d952bcb7-6470-54dd-a8cf-6abf2e2e352c"


def test_run_ids_are_fresh_hex() -> None:
    """Each run gets its own id: 32 hex digits."""
    first, second = new_run_id(), new_run_id()
    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0
