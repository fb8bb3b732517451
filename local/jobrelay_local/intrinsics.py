"""The few intrinsic functions moto leaves unresolved (state machine substitution values),
resolved against the created stack's parameters and resources."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import boto3


def scalar(value: Any) -> str:
    """A parameter or property value as CloudFormation passes it on: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(scalar(item) for item in value)
    return str(value)


@dataclass
class Resolver:
    """Resolves `Ref`, `Fn::GetAtt`, `Fn::Join` and `Fn::Sub` of one created stack."""

    region: str
    account_id: str
    stack_name: str
    stack_id: str
    parameters: dict[str, str]
    resources: dict[str, str]
    resource_types: dict[str, str]

    def resolve(self, value: Any) -> str:
        if isinstance(value, str | int | float | bool):
            return scalar(value)
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.ref(str(argument))
            if function == "Fn::GetAtt":
                if isinstance(argument, str):
                    argument = argument.split(".", 1)
                return self.get_att(str(argument[0]), str(argument[1]))
            if function == "Fn::Join":
                delimiter, values = argument
                return str(delimiter).join(self.resolve(item) for item in values)
            if function == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self._sub_name(m.group(1)), argument)
        raise NotImplementedError(f"cannot resolve {value!r} locally")

    def _sub_name(self, name: str) -> str:
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return self.get_att(logical_id, attribute)
        return self.ref(name)

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.resources[name]

    def get_att(self, logical_id: str, attribute: str) -> str:
        physical = self.resources[logical_id]
        kind = self.resource_types[logical_id]
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            client = boto3.client("lambda", region_name=self.region)
            return client.get_function_configuration(FunctionName=physical)["FunctionArn"]
        if kind == "AWS::SQS::Queue":
            if attribute == "QueueUrl":
                return physical
            if attribute == "QueueName":
                return physical.rsplit("/", 1)[-1]
            if attribute == "Arn":
                sqs = boto3.client("sqs", region_name=self.region)
                attributes = sqs.get_queue_attributes(
                    QueueUrl=physical, AttributeNames=["QueueArn"]
                )["Attributes"]
                return attributes["QueueArn"]
        if kind == "AWS::SNS::Topic":
            if attribute == "TopicArn":
                return physical
            if attribute == "TopicName":
                return physical.rsplit(":", 1)[-1]
        if kind == "AWS::StepFunctions::StateMachine":
            if attribute == "Arn":
                return physical
            if attribute == "Name":
                return physical.rsplit(":", 1)[-1]
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            dynamodb = boto3.client("dynamodb", region_name=self.region)
            return str(dynamodb.describe_table(TableName=physical)["Table"]["TableArn"])
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            iam = boto3.client("iam", region_name=self.region)
            return str(iam.get_role(RoleName=physical)["Role"]["Arn"])
        raise NotImplementedError(f"cannot resolve {logical_id}.{attribute} ({kind}) locally")
