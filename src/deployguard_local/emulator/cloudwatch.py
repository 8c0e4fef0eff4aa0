"""CloudWatch on moto: percentile statistics (p50, p99 ...) from the datapoints it holds, and
GetMetricData through an index instead of a scan per query and period (same answers)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any


def install_cloudwatch() -> list[Callable[[], None]]:
    """Fill moto's CloudWatch gaps; returns the undos."""
    from moto.cloudwatch import models as cw_models

    undo: list[Callable[[], None]] = []
    original_stat = cw_models.Statistics.get_statistics_for_type

    def statistics_with_percentiles(self: Any, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            values = sorted(self.metric_single_values_list)
            if not values:
                return None
            rank = max(1, math.ceil(float(stat[1:]) / 100.0 * len(values)))
            return values[min(rank, len(values)) - 1]
        return original_stat(self, stat)

    setattr(cw_models.Statistics, "get_statistics_for_type", statistics_with_percentiles)  # noqa: B010
    undo.append(lambda: setattr(cw_models.Statistics, "get_statistics_for_type", original_stat))

    original_get_metric_data = cw_models.CloudWatchBackend.get_metric_data

    def indexed_get_metric_data(
        self: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        """GetMetricData for MetricStat queries with an index instead of a scan per query and period.

        moto filters every stored datapoint for every query and every period, which makes a
        batch of 500 queries over thousands of datapoints take minutes; the answer is the same.
        """
        if any("MetricStat" not in q for q in queries) or start_time >= end_time:
            return original_get_metric_data(self, queries, start_time, end_time, scan_by)
        start_time = start_time.replace(microsecond=0)
        end_time = end_time.replace(microsecond=0)
        index: dict[tuple[str, str, frozenset[tuple[str, str]]], list[Any]] = {}
        for md in self.get_all_metrics():
            if start_time <= md.timestamp < end_time:
                key = (md.namespace, md.name, frozenset((d.name, d.value) for d in md.dimensions))
                index.setdefault(key, []).append(md)
        results = []
        for query in queries:
            stat_query = query["MetricStat"]
            metric = stat_query["Metric"]
            period = int(stat_query["Period"])
            key = (
                metric["Namespace"],
                metric["MetricName"],
                frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])),
            )
            buckets: dict[int, list[Any]] = {}
            for md in index.get(key, []):
                if stat_query.get("Unit") and md.unit != stat_query["Unit"]:
                    continue
                buckets.setdefault(int((md.timestamp - start_time).total_seconds()) // period, []).append(md)
            timestamps, values = [], []
            for bucket in sorted(buckets):
                at = start_time + timedelta(seconds=bucket * period)
                stats = cw_models.Statistics([stat_query["Stat"]], at)
                stats.metric_data = buckets[bucket]
                value = stats.get_statistics_for_type(stat_query["Stat"])
                if value is not None:
                    timestamps.append(stats.timestamp)
                    values.append(value)
            if scan_by == "TimestampDescending":
                timestamps.reverse()
                values.reverse()
            if query.get("ReturnData", True):
                results.append(
                    {
                        "id": query["Id"],
                        "label": query.get("Label") or f"{metric['MetricName']} {stat_query['Stat']}",
                        "values": values,
                        "timestamps": timestamps,
                        "status_code": "Complete",
                    }
                )
        return results

    cw_models.CloudWatchBackend.get_metric_data = indexed_get_metric_data  # type: ignore[method-assign]
    undo.append(lambda: setattr(cw_models.CloudWatchBackend, "get_metric_data", original_get_metric_data))

    return undo
