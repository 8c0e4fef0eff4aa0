"""Helpers of the remediation unit tests."""

from __future__ import annotations

from deployguard.aws import clients


def make_function(name: str = "checkout-api", versions: int = 2) -> list[str]:
    """A Lambda function with published versions and alias ``live`` routing 25% to the last one."""
    import io
    import json
    import zipfile

    iam = clients.client("iam")
    try:
        role = iam.get_role(RoleName="fn-role")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            RoleName="fn-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return 1\n")
    lam = clients.client("lambda")
    lam.create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler", Code={"ZipFile": buffer.getvalue()}
    )
    published = []
    for i in range(versions):
        lam.update_function_configuration(FunctionName=name, Description=f"release {i + 1}")
        published.append(lam.publish_version(FunctionName=name)["Version"])
    lam.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion=published[0],
        RoutingConfig={"AdditionalVersionWeights": {published[-1]: 0.25}},
    )
    return published
