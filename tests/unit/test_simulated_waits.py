"""The embedded Step Functions' retry back-offs move the simulated clock for a running
execution only: a stopped one, its retry still unwinding, must not move another run's clock."""

from __future__ import annotations

import types
from typing import Any

import pytest


@pytest.mark.parametrize(("running", "advanced"), [(True, 42.0), (False, 0.0)])
def test_retry_backoff_moves_the_clock_only_for_a_running_execution(
    monkeypatch: pytest.MonkeyPatch, running: bool, advanced: float
) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    from deployguard_local.emulator.clock import ListeningClock
    from deployguard_local.emulator.stepfunctions import install_simulated_waits

    def backoff_of_42_seconds(self: Any, env: Any) -> None:  # what the retrier does after its bookkeeping
        retrier_decl.time.sleep(42)

    monkeypatch.setattr(retrier_decl.RetrierDecl, "_eval_body", backoff_of_42_seconds)
    clock = ListeningClock()
    start = clock()
    undos = install_simulated_waits(clock)
    try:
        execution = types.SimpleNamespace(is_running=lambda: running)
        retrier_decl.RetrierDecl._eval_body(None, execution)  # type: ignore[arg-type]
        retrier_decl.time.sleep(7)  # a sleep outside any retrier moves nothing
    finally:
        for undo in reversed(undos):
            undo()
    assert (clock() - start).total_seconds() == advanced
    assert retrier_decl.RetrierDecl._eval_body is backoff_of_42_seconds


def test_a_definition_is_parsed_once_and_each_execution_gets_components_of_its_own() -> None:
    import json

    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws
    from moto.stepfunctions.parser.asl.parse import asl_parser

    from deployguard_local.emulator.stepfunctions import parse_definitions_once

    lexed: list[str] = []
    original_lexer = asl_parser.ASLLexer

    def counting_lexer(stream: Any) -> Any:
        lexed.append(str(stream))
        return original_lexer(stream)

    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": {"n": 1}, "End": True}}})
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        undo = parse_definitions_once()
        asl_parser.ASLLexer = counting_lexer  # type: ignore[misc]
        try:
            parse = asl_parser.AmazonStateLanguageParser.parse
            first, tree = parse(definition)
            second, same_tree = parse(definition)
            assert same_tree is tree and second is not first  # one parse, components of its own each time
            assert type(second) is type(first)
            sfn = boto3.client("stepfunctions", region_name="us-east-1")
            for _ in range(2):  # moto's answer to a broken one, every time
                with pytest.raises(ClientError, match="ASLParserException"):
                    sfn.create_state_machine(
                        name="broken", definition='{"StartAt": 1}', roleArn="arn:aws:iam::1:role/r"
                    )
            assert len(lexed) == 3  # the good definition once, the broken one each time
        finally:
            asl_parser.ASLLexer = original_lexer  # type: ignore[misc]
            undo()
    assert asl_parser.AmazonStateLanguageParser.parse is not parse
