"""ReportWriterFunction on the embedded AWS: summaries to the ReportsBucket and onto the events topic."""

from __future__ import annotations

import json
from pathlib import Path

from deployguard.aws import clients
from deployguard_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]


def load_event(name: str) -> dict:
    return dict(json.loads((ROOT / "events" / name).read_text(encoding="utf-8")))


def test_daily_summary_lands_in_the_bucket_and_on_the_topic() -> None:
    with EmbeddedAws() as aws:
        aws.seed_sample()
        sqs = clients.client("sqs")
        queue = sqs.create_queue(QueueName="summary-listener")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        only_summaries = json.dumps({"event_type": ["summary.published"]})
        clients.client("sns").subscribe(
            TopicArn=aws.ref("DeploymentEventsTopic"), Protocol="sqs", Endpoint=queue_arn,
            Attributes={"FilterPolicy": only_summaries, "RawMessageDelivery": "true"},
        )  # fmt: skip
        assert aws.clock is not None
        aws.clock.advance(3600)  # an hour after the sample deployments started
        payload, errored = aws.invoke("ReportWriterFunction", load_event("summary_daily.json"))
        assert not errored, payload
        bucket = aws.ref("ReportsBucket")
        keys = [o["Key"] for o in clients.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        markdown = next(k for k in keys if k.endswith(".md"))
        text = clients.client("s3").get_object(Bucket=bucket, Key=markdown)["Body"].read().decode()
    assert sorted(k.rsplit(".", 1)[1] for k in keys) == ["json", "md"]
    assert all(k.startswith("summaries/daily/") for k in keys)
    assert "# DeployGuard daily summary" in text
    event = json.loads(messages[0]["Body"])
    assert event["event_type"] == "summary.published" and event["links"]["summary"].endswith(".md")
    assert event["details"]["deployments"] == 2  # the two sample deployments started in the last day
