"""The scale bench's cost model (issue 12): DynamoDB units from item sizes as DynamoDB counts them,
alias reads on the services' grids, every service the guard pays for in the estimate."""

from __future__ import annotations

from typing import Any

from deployguard_local.bench_scale import (
    ASSUMPTIONS,
    alarm_metrics,
    cycles_for,
    item_bytes,
    monitoring_looks_per_deployment,
    monthly_cost,
    paired_cpu_ratio,
    paired_cpu_ratios,
    quartiles,
    read_units,
    service_looks_per_day,
    write_units,
)

RECORD = {"pk": {"S": "DEP#d1"}, "sk": {"S": "META"}, "gsi1pk": {"S": "LOOP"}, "gsi2pk": {"S": "SVC#a#prod"},
          "gsi1sk": {"S": "2026-11-02T12:00:00.000000Z#M#d1"}, "blob": {"S": "x" * 1500}}  # fmt: skip


def test_item_sizes_and_units_as_dynamodb_counts_them() -> None:
    assert item_bytes({"pk": {"S": "abc"}, "n": {"N": "123"}}) == 2 + 3 + 1 + 3
    assert item_bytes({"m": {"M": {"a": {"BOOL": True}}}}) == 1 + 3 + 1 + 1 + 1
    # a monitored record (gsi1 key moves: delete and put) in a transaction with a 1 KB assessment
    assessment = {"pk": {"S": "DEP#d1"}, "sk": {"S": "AS#1"}, "v": {"S": "y" * 900}}
    body = {"TransactItems": [{"Put": {"Item": assessment}}, {"Put": {"Item": RECORD}}]}
    assert write_units("TransactWriteItems", body) == 2 * 1 + 2 * 2 + 2 * 2 + 2
    assert read_units("Query", {"Items": [RECORD] * 3}, consistent=False) == {"monitoring": 1.0}


def test_the_estimate_names_every_service_and_comes_from_the_measured_run() -> None:
    run: dict[str, Any] = {
        "metrics_per_canary_look": 10.0, "alias_metrics_per_service_look": 5.0, "cpu_ms_per_deployment": 40.0,
        "calls_by_operation": {"dynamodb.TransactWriteItems": 1.0, "cloudwatch.GetMetricData": 0.01},
        "dynamodb_units_per_look": {"canary": [0.5, 20], "monitoring": [0.2, 12], "tick": [1.0, 1]},
        "shards_per_cycle": 0.0, "verdict_metrics_per_service": 4.0, "guard_metrics": 5,
        "log_bytes_per_deployment": 1000, "dynamodb_stored_bytes_per_look": {"canary": 3000, "monitoring": 900},
    }  # fmt: skip
    cost = monthly_cost(run, 1000)
    assert set(cost) >= {"getmetricdata", "dynamodb", "lambda", "sqs", "sns", "stepfunctions", "eventbridge",
                         "cloudwatch_metrics", "cloudwatch_alarms", "cloudwatch_logs", "xray"}  # fmt: skip
    assert abs(cost["total"] - sum(v for k, v in cost.items() if k != "total")) < 0.05
    looks = 1000 * ASSUMPTIONS["days_per_month"]
    canary = looks * ASSUMPTIONS["canary_minutes_per_deployment"] * 10 / 1000 * 0.01
    alias = 100 * service_looks_per_day(10) * ASSUMPTIONS["days_per_month"] * 5 / 1000 * 0.01
    assert abs(cost["getmetricdata"] - (canary + alias)) < 0.05
    assert monthly_cost({**run, "alias_metrics_per_service_look": 10.0}, 1000)["getmetricdata"] > cost["getmetricdata"]


def test_a_services_deployments_share_alias_reads_on_its_grid() -> None:
    assert monitoring_looks_per_deployment() == 60 + 72 + 68
    assert service_looks_per_day(1) == 200  # one deployment: its own looks
    assert service_looks_per_day(10) < 0.7 * 10 * 200  # ten a day: the 5- and 15-minute looks shared


def test_storage_alarms_and_traces_are_priced() -> None:
    """What the template turns on costs too: the assessments kept (and point-in-time recovery), the alarms'
    metrics and the dashboard, X-Ray traces of every invocation."""
    run: dict[str, Any] = {
        "metrics_per_canary_look": 10.0, "alias_metrics_per_service_look": 5.0, "cpu_ms_per_deployment": 10.0,
        "calls_by_operation": {}, "dynamodb_units_per_look": {"canary": [0, 0], "monitoring": [0, 0], "tick": [0, 0]},
        "shards_per_cycle": 0.0, "verdict_metrics_per_service": 3.0, "guard_metrics": 5,
        "log_bytes_per_deployment": 0, "dynamodb_stored_bytes_per_look": {"canary": 0, "monitoring": 0},
    }  # fmt: skip
    bigger = {**run, "dynamodb_stored_bytes_per_look": {"canary": 3000, "monitoring": 900}}
    assert monthly_cost(bigger, 1000)["dynamodb"] > monthly_cost(run, 1000)["dynamodb"] > 0  # the overhead bytes
    assert alarm_metrics() >= 6  # six alarms, some on metric math over several metrics
    assert monthly_cost(run, 1000)["cloudwatch_alarms"] == round(alarm_metrics() * 0.10 + 3.0, 2)
    assert monthly_cost(run, 10000)["xray"] > monthly_cost(run, 1000)["xray"]


def test_small_configurations_measure_more_cycles() -> None:
    assert cycles_for(10, 5) == 55 and cycles_for(100, 50) == 6 and cycles_for(1000, 500) == 3


def test_the_age_ratio_pairs_the_cycles_and_can_take_the_machines_speed_out() -> None:
    young = {"cpu_ms_per_deployment_by_cycle": [10.0, 20.0, 10.0], "bench_cpu_ms_per_deployment_by_cycle": [1, 1, 1]}
    # the same cycles 30% slower at age 120, and so is the bench's own (the same) counting: a slower machine
    old = {"cpu_ms_per_deployment_by_cycle": [13.0, 26.0, 13.0], "bench_cpu_ms_per_deployment_by_cycle": [1.3] * 3}
    assert abs(paired_cpu_ratio(young, old) - 1.3) < 1e-9
    assert abs(paired_cpu_ratio(young, old, against_bench=True) - 1.0) < 1e-9
    young["reference_cpu_ms_by_cycle"] = [80.0, 80.0, 80.0]  # the fixed workload after each cycle
    old["reference_cpu_ms_by_cycle"] = [104.0, 104.0, 104.0]
    assert [round(r, 9) for r in paired_cpu_ratios(young, old, "reference")] == [1.0, 1.0, 1.0]


def test_the_spread_is_the_quartiles_of_the_cycles_ratios() -> None:
    assert quartiles([1.0, 2.0, 3.0]) == (2.0, 2.0, 2.0)  # too few for quartiles: the median
    median, low, high = quartiles([0.9, 1.0, 1.0, 1.1, 1.2, 1.4, 0.8])
    assert median == 1.0 and low < median < high
