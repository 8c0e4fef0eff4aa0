"""template.yaml's resources on the embedded AWS: tables, buckets, queues, topics, functions (with
their SNS, SQS and EventBridge event sources and on-failure destinations) and state machines."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from deployguard.aws import clients
from deployguard.workflows import runtime
from deployguard_local.emulator.environment import _environment
from deployguard_local.emulator.lambda_runtime import AsyncInvoker, FunctionRegistry, LocalFunction, code_zip
from deployguard_local.template import Stack


class StackResources:
    """Creates the template's resources through the real boto3 calls, and invokes its functions."""

    root: Path
    stack: Stack
    storage_only: bool
    registry: FunctionRegistry
    functions: dict[str, LocalFunction]
    function_environment: dict[str, str]
    invoker: AsyncInvoker
    role_arn: str
    _exit: contextlib.ExitStack

    def _create_stack(self) -> None:
        stack = self.stack
        name = stack.stack_name
        dynamodb = clients.client("dynamodb")
        for logical_id, res in stack.of_type("AWS::DynamoDB::Table").items():
            props = stack.resolve(res["Properties"])
            table_name = f"{name}-{logical_id}"
            request = {
                k: props[k]
                for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
                if k in props
            }
            dynamodb.create_table(TableName=table_name, **request)
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
            stack.set_physical(
                logical_id, Ref=table_name, Arn=f"arn:aws:dynamodb:{stack.region}:{stack.account_id}:table/{table_name}"
            )
        s3 = clients.client("s3")
        for logical_id in stack.of_type("AWS::S3::Bucket"):
            bucket = f"{name}-{logical_id}".lower()
            s3.create_bucket(Bucket=bucket)
            stack.set_physical(logical_id, Ref=bucket, Arn=f"arn:aws:s3:::{bucket}")
        if self.storage_only:
            return
        sqs = clients.client("sqs")
        for logical_id, _res in stack.of_type("AWS::SQS::Queue").items():
            queue_name = f"{name}-{logical_id}"
            url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            stack.set_physical(logical_id, Ref=url, Arn=arn, QueueName=queue_name)
        sns = clients.client("sns")
        for logical_id, res in stack.of_type("AWS::SNS::Topic").items():
            props = stack.resolve(res["Properties"])
            topic_name = f"{name}-{logical_id}"
            attributes = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if "KmsMasterKeyId" in props else {}
            arn = sns.create_topic(Name=topic_name, Attributes=attributes)["TopicArn"]
            stack.set_physical(logical_id, Ref=arn, TopicName=topic_name)
        for logical_id in stack.of_type("AWS::Serverless::LayerVersion"):
            stack.set_physical(logical_id, Ref=f"arn:aws:lambda:{stack.region}:{stack.account_id}:layer:{logical_id}:1")
        iam = clients.client("iam")
        role_arn = iam.create_role(
            RoleName=f"{name}-execution",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self.role_arn = role_arn
        # names first, so environments can refer to any function
        for logical_id, res in stack.of_type("AWS::Serverless::Function").items():
            fn_name = str(stack.resolve(res["Properties"].get("FunctionName", f"{name}-{logical_id}")))
            arn = f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{fn_name}"
            stack.set_physical(logical_id, Ref=fn_name, Arn=arn)
        for logical_id in stack.of_type("AWS::Serverless::StateMachine"):
            sm_name = f"{name}-{logical_id}"
            stack.set_physical(
                logical_id, Ref=f"arn:aws:states:{stack.region}:{stack.account_id}:stateMachine:{sm_name}", Name=sm_name
            )
        lambda_client = clients.client("lambda")
        for logical_id in stack.of_type("AWS::Serverless::Function"):
            definition = stack.function_definition(logical_id)
            environment = {k: str(v) for k, v in stack.resolve(definition["Environment"]["Variables"]).items()}
            fn = LocalFunction(
                logical_id=logical_id,
                name=stack.ref(logical_id),
                code_dir=self.root / definition["CodeUri"],
                handler=definition["Handler"],
                timeout=int(definition.get("Timeout", 3)),
                memory=int(definition.get("MemorySize", 128)),
                environment=environment,
            )
            lambda_client.create_function(
                FunctionName=fn.name,
                Runtime=definition["Runtime"],
                Role=role_arn,
                Handler=fn.handler,
                Code={"ZipFile": code_zip(fn.code_dir)},
                Timeout=fn.timeout,
                MemorySize=fn.memory,
                Environment={"Variables": environment},
            )
            self.functions[logical_id] = fn
            self.registry.register(fn)
            self.function_environment.update(environment)
            self._subscribe_events(logical_id, fn, stack.resolve(definition.get("Events", {})))
            on_failure = (
                stack.resolve(definition.get("EventInvokeConfig", {})).get("DestinationConfig", {}).get("OnFailure")
            )
            if on_failure and on_failure.get("Type") == "SQS" and hasattr(self, "invoker"):
                queue_url = next(v["Ref"] for v in stack.physical.values() if v.get("Arn") == on_failure["Destination"])
                self.invoker.on_failure[fn.name] = queue_url
        sfn = clients.client("stepfunctions")
        for logical_id in stack.of_type("AWS::Serverless::StateMachine"):
            arn = sfn.create_state_machine(
                name=stack.physical[logical_id]["Name"],
                definition=stack.state_machine_definition(logical_id),
                roleArn=role_arn,
            )["stateMachineArn"]
            stack.set_physical(logical_id, Ref=arn)
        # the functions run in this process: their environment becomes the process's
        self._exit.enter_context(_environment(self.function_environment))
        runtime.reset()

    def _subscribe_events(self, logical_id: str, fn: LocalFunction, events: dict[str, Any]) -> None:
        arn = self.stack.get_att(logical_id, "Arn")
        for event in events.values():
            props = event.get("Properties", {})
            if event["Type"] == "SNS":
                attributes = {"FilterPolicy": json.dumps(props["FilterPolicy"])} if "FilterPolicy" in props else {}
                clients.client("sns").subscribe(
                    TopicArn=props["Topic"], Protocol="lambda", Endpoint=arn, Attributes=attributes
                )
            elif event["Type"] == "SQS":
                queue_url = next(v["Ref"] for v in self.stack.physical.values() if v.get("Arn") == props["Queue"])
                self.queue_sources[logical_id] = (queue_url, props["Queue"], int(props.get("BatchSize", 10)))
            elif event["Type"] in ("Schedule", "EventBridgeRule"):
                rule = f"{fn.name}-{len(self.rules)}"
                kwargs: dict[str, Any] = {"Name": rule}
                if event["Type"] == "Schedule":
                    kwargs["ScheduleExpression"] = props["Schedule"]
                    kwargs["State"] = props.get("State", "ENABLED")
                else:
                    kwargs["EventPattern"] = json.dumps(props["Pattern"])
                clients.client("events").put_rule(**kwargs)
                clients.client("events").put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": arn}])
                self.rules[rule] = (event["Type"], logical_id)

    @property
    def queue_sources(self) -> dict[str, tuple[str, str, int]]:
        """Per function with an SQS event: its queue's URL and ARN, and the batch size."""
        if not hasattr(self, "_queue_sources"):
            self._queue_sources: dict[str, tuple[str, str, int]] = {}
        return self._queue_sources

    def deliver_queue(self, logical_id: str) -> list[tuple[Any, bool]]:
        """Deliver what waits in the function's SQS event source, as Lambda's poller does: batches of
        ``BatchSize`` messages in an ``aws:sqs`` event through the Lambda Invoke API, deleted when the
        invocation succeeds (left on the queue when it fails). Returns each invocation's answer."""
        queue_url, queue_arn, batch_size = self.queue_sources[logical_id]
        sqs = clients.client("sqs")
        answers: list[tuple[Any, bool]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=min(10, batch_size), AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return answers
            event = {
                "Records": [
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": m.get("Attributes", {}),
                        "messageAttributes": {},
                        "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": queue_arn,
                        "awsRegion": self.stack.region,
                    }
                    for m in messages
                ]
            }
            payload, errored = self.invoke(logical_id, event)
            answers.append((payload, errored))
            if errored:
                return answers  # left on the queue: visible again after its visibility timeout
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    @property
    def rules(self) -> dict[str, tuple[str, str]]:
        if not hasattr(self, "_rules"):
            self._rules: dict[str, tuple[str, str]] = {}
        return self._rules

    def ref(self, logical_id: str) -> str:
        return str(self.stack.ref(logical_id))

    def invoke(self, logical_id: str, event: Any) -> tuple[Any, bool]:
        """Invoke a template function through the real Lambda Invoke API (served in-process)."""
        resp = clients.client("lambda").invoke(FunctionName=self.ref(logical_id), Payload=json.dumps(event).encode())
        payload = json.loads(resp["Payload"].read() or b"null")
        return payload, "FunctionError" in resp
