"""The two CodeDeploy calls remediation needs (until deployguard.aws.codedeploy offers them)."""

from __future__ import annotations

from deployguard.aws import clients

FINISHED = frozenset({"Succeeded", "Failed", "Stopped"})


def deployment_status(deployment_id: str) -> str:
    info = clients.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    return str(info["status"])


def stop_deployment(deployment_id: str) -> str:
    """StopDeployment with automatic rollback; returns CodeDeploy's status ("Pending" or "Succeeded")."""
    resp = clients.client("codedeploy").stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    return str(resp.get("status", ""))
