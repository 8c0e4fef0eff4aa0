"""The ReportsBucket (S3): health reports and summaries, written whole, read back by key."""

from __future__ import annotations

from deployguard.aws import clients


class ReportStore:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, key: str, body: str, content_type: str) -> str:
        """Write one object (server-side encrypted by the bucket's default); returns its s3:// URI."""
        clients.client("s3").put_object(
            Bucket=self.bucket, Key=key, Body=body.encode("utf-8"), ContentType=content_type
        )
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str) -> str:
        return str(clients.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8"))
