"""What moto's CloudFormation leaves out of the stack, filled in after it is created: the
state machines (with their `DefinitionSubstitutions`) and the DynamoDB TTL and PITR."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3

from jobrelay_local.intrinsics import Resolver


def install_state_machines(cfn_template: Mapping[str, Any], resolver: Resolver) -> dict[str, str]:
    """Put each state machine where moto's Step Functions API sees it, substitutions applied.

    moto's CloudFormation creates `AWS::StepFunctions::StateMachine` in its plain Step
    Functions backend, but with `execute_state_machine` the API (and the interpreter) use a
    separate parser backend, so the stack's machine is invisible there; moto also ignores
    `DefinitionSubstitutions`. So: resolve the definition, substitute, and create the machine
    through the API under the stack's physical name (or update it, should moto see it).
    """
    sfn = boto3.client("stepfunctions", region_name=resolver.region)
    state_machines: dict[str, str] = {}
    for logical_id, resource in cfn_template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        props: dict[str, Any] = resource.get("Properties", {})
        arn = resolver.resources[logical_id]
        definition = _definition_of(logical_id, props, resolver)
        for name, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + name + "}", resolver.resolve(value))
        role_arn = resolver.resolve(props["RoleArn"])
        try:
            sfn.describe_state_machine(stateMachineArn=arn)
        except sfn.exceptions.StateMachineDoesNotExist:
            created = sfn.create_state_machine(
                name=arn.rsplit(":", 1)[-1],
                definition=definition,
                roleArn=role_arn,
                type=props.get("StateMachineType", "STANDARD"),
                tracingConfiguration={
                    "enabled": bool(props.get("TracingConfiguration", {}).get("Enabled"))
                },
            )
            arn = created["stateMachineArn"]
        else:
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
        state_machines[logical_id] = arn
    return state_machines


def apply_table_settings(cfn_template: Mapping[str, Any], resolver: Resolver) -> None:
    """Apply the DynamoDB table properties moto's CloudFormation skips (TTL, PITR)."""
    dynamodb = boto3.client("dynamodb", region_name=resolver.region)
    for logical_id, resource in cfn_template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props: dict[str, Any] = resource.get("Properties", {})
        table = resolver.resources[logical_id]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _truthy(ttl.get("Enabled")):
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _truthy(pitr.get("PointInTimeRecoveryEnabled")):
            dynamodb.update_continuous_backups(
                TableName=table,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _definition_of(logical_id: str, props: Mapping[str, Any], resolver: Resolver) -> str:
    if "Definition" in props:
        return json.dumps(props["Definition"], indent=2)
    if "DefinitionString" in props:
        return resolver.resolve(props["DefinitionString"])
    raise NotImplementedError(f"{logical_id}: only inline or local-file definitions are supported")
