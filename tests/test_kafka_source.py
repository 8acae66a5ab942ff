"""The Kafka source partition on a real broker: batch bounds, offsets for recovery, a prompt close."""

from __future__ import annotations

import time

from operators.kafka_io import KafkaSource, ensure_topics


def _take(part, want: int, timeout: float = 20.0) -> list[list[bytes]]:
    """Batches of ``part`` until ``want`` messages came (empty polls are skipped, as Bytewax sleeps them)."""
    batches: list[list[bytes]] = []
    deadline = time.monotonic() + timeout
    while sum(map(len, batches)) < want:
        assert time.monotonic() < deadline, f"only {sum(map(len, batches))} of {want} messages came"
        got = part.next_batch()
        if got:
            batches.append([m.value for m in got])
        else:
            time.sleep(0.005)
    return batches


def test_batches_keep_max_records_and_a_restart_resumes_after_the_last_taken(services, names, producer) -> None:
    topic, n = names["topic"], 250
    ensure_topics(services["FRESHREC_KAFKA"], {topic: 1})
    for i in range(n):
        producer.send(topic, value=b"%d" % i)
    producer.flush()
    source = KafkaSource(services["FRESHREC_KAFKA"], topic, max_records=40)
    assert source.list_parts() == ["0"]

    first = source.build_part("input", "0", None)
    try:
        # at most max_records a batch, in order
        batches = _take(first, 100)
        assert all(0 < len(b) <= 40 for b in batches), [len(b) for b in batches]
        taken = [v for b in batches for v in b]
        assert taken == [b"%d" % i for i in range(len(taken))]
        resume = first.snapshot()
        assert resume == len(taken)  # the offset after the last message taken, not after the last fetched
    finally:
        t0 = time.monotonic()
        first.close()
        assert time.monotonic() - t0 < 2.0

    second = source.build_part("input", "0", resume)
    try:
        rest = [v for b in _take(second, n - resume) for v in b]
        assert rest == [b"%d" % i for i in range(resume, n)]  # nothing lost, nothing twice
        assert second.snapshot() == n
    finally:
        second.close()
