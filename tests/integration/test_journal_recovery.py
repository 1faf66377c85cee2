"""Crash recovery when the Variable is more than one batch behind the journal.

The tasks of a split share a connector's Variable: each re-reads and merges before it saves, but
not atomically, so one task's save can overwrite another's newest entry. If that task then dies
after its next Kafka commit, the Variable is two batches behind what Kafka holds (the Celery test
that SIGKILLs a worker found 2,000 rows delivered twice this way). The journal's chain of commits
says where the partition really is; an offset altered on purpose starts a new chain.
"""

from __future__ import annotations

from airconnect.core.kafka_client import SourceWriter, journal_key
from airconnect.core.manage import journal_tombstones


def _commit(writer: SourceWriter, topic: str, key: bytes, offset: dict, previous: dict | None) -> None:
    writer.begin()
    writer.produce(topic, b"x")
    writer.commit({key: (offset, previous)})


def test_a_variable_two_batches_behind_resumes_after_the_last_commit(kafka, unique):
    name, topic = f"journal-{unique}", f"journal-topic-{unique}"
    key = journal_key(name, {"table": "t"})
    writer = SourceWriter(kafka, name)
    try:
        _commit(writer, topic, key, {"incrementing": 1}, None)
        _commit(writer, topic, key, {"incrementing": 2}, {"incrementing": 1})
        _commit(writer, topic, key, {"incrementing": 3}, {"incrementing": 2})
    finally:
        writer.close()
    again = SourceWriter(kafka, name)
    try:
        # The Variable says 1 (its save of 2 was overwritten, the run died after committing 3).
        assert again.recover(key, {"incrementing": 1}) == {"incrementing": 3}
        assert again.recover(key, {"incrementing": 2}) == {"incrementing": 3}
        assert again.recover(key, {"incrementing": 3}) == {"incrementing": 3}
        # An offset the journal never committed is a person's: honoured.
        assert again.recover(key, {"incrementing": 7}) == {"incrementing": 7}
        # Altered on purpose back to an offset committed before: a tombstone starts a new chain.
        journal_tombstones(name, kafka, [key])
        assert again.recover(key, {"incrementing": 1}) == {"incrementing": 1}
    finally:
        again.close()
