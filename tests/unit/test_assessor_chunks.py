"""The tick reads due deployments a chunk at a time: chunks of whole GetMetricData calls, so the
tick's calls stay ceil(queries/500) (make bench's batch-read section asserts the same end to end)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from deployguard.aws.cloudwatch import MAX_QUERIES_PER_CALL
from deployguard.workflows.assessor import QUERIES_PER_CHUNK, _chunks


def _due(queries: int) -> Any:
    return SimpleNamespace(request=SimpleNamespace(queries=[None] * queries))


def test_chunks_never_pass_the_chunk_size_so_calls_stay_at_the_least() -> None:
    due = [_due(16) for _ in range(200)]  # 3,200 queries: 7 calls at least
    chunks = list(_chunks(due))
    sizes = [sum(len(d.request.queries) for d in chunk) for chunk in chunks]
    assert sum(len(chunk) for chunk in chunks) == 200 and max(sizes) <= QUERIES_PER_CHUNK
    assert sum(math.ceil(s / MAX_QUERIES_PER_CALL) for s in sizes) == math.ceil(3200 / MAX_QUERIES_PER_CALL)


def test_a_deployment_larger_than_a_chunk_is_a_chunk_of_its_own() -> None:
    chunks = list(_chunks([_due(10), _due(QUERIES_PER_CHUNK + 1), _due(10)]))
    assert [len(chunk) for chunk in chunks] == [1, 1, 1]


def test_canary_and_monitoring_reads_are_not_mixed_in_a_chunk() -> None:
    from deployguard.workflows.assessor import DueCanary
    from deployguard.workflows.monitoring import DueMonitoring

    def due(kind: type, queries: int) -> Any:
        item = kind.__new__(kind)
        item.request = SimpleNamespace(queries=[None] * queries)
        return item

    chunks = list(_chunks([due(DueCanary, 10)] * 3 + [due(DueMonitoring, 5)] * 2))
    assert [[type(d).__name__ for d in chunk] for chunk in chunks] == [["DueCanary"] * 3, ["DueMonitoring"] * 2]
