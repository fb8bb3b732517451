"""Schedules: `schedules.yaml` rendered into the template, and firings rendered locally
exactly as EventBridge Scheduler renders them (moto does not run Scheduler)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jobrelay.creation import parse_request

from jobrelay_cli.template import PROJECT_ROOT, load_template

SCHEDULES_FILE = PROJECT_ROOT / "schedules.yaml"
BEGIN = "  # BEGIN schedules (generated from schedules.yaml by `make schedules`; do not edit)\n"
END = "  # END schedules\n"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


class ScheduleError(ValueError):
    """A schedule entry that cannot be deployed."""


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    timezone: str
    enabled: bool
    request: dict[str, Any]

    @property
    def logical_id(self) -> str:
        return "Schedule" + "".join(part.capitalize() for part in self.name.split("-"))

    def input_template(self) -> str:
        """The target Input: the request with its request id bound to the firing time."""
        body = {"request_id": f"{self.name}@{SCHEDULED_TIME}", **self.request}
        return json.dumps(body, separators=(",", ":"), sort_keys=False)


def load_schedules(path: Path = SCHEDULES_FILE) -> list[Schedule]:
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    schedules = []
    seen: set[str] = set()
    for entry in document.get("schedules") or []:
        name = str(entry.get("name", ""))
        if not NAME.match(name):
            raise ScheduleError(f"schedule name {name!r}: lowercase letters, digits, dashes")
        if name in seen:
            raise ScheduleError(f"schedule {name!r} is declared twice")
        seen.add(name)
        expression = str(entry.get("expression", ""))
        if not re.match(r"^(cron|rate|at)\(.+\)$", expression):
            raise ScheduleError(
                f"schedule {name!r}: expression must be cron(...), rate(...) or at(...)"
            )
        request = dict(entry.get("request") or {})
        if "request_id" in request:
            raise ScheduleError(f"schedule {name!r}: request_id is derived from the firing")
        # The request must be valid for any firing time: check it with a sample firing.
        sample = {"request_id": f"{name}@2026-01-01T00:00:00Z", **request}
        parse_request(json.dumps(sample))
        schedules.append(
            Schedule(
                name=name,
                expression=expression,
                timezone=str(entry.get("timezone") or "UTC"),
                enabled=bool(entry.get("enabled", True)),
                request=request,
            )
        )
    return schedules


def render_resources(schedules: list[Schedule]) -> str:
    """The CloudFormation resources of the schedules, as template.yaml text."""
    lines = [BEGIN]
    for schedule in schedules:
        input_json = schedule.input_template().replace("'", "''")
        lines += [
            f"  {schedule.logical_id}:\n",
            "    Type: AWS::Scheduler::Schedule\n",
            "    Properties:\n",
            f"      Name: !Sub ${{AWS::StackName}}-{schedule.name}\n",
            "      GroupName: !Ref JobSchedulesGroup\n",
            f"      Description: jobrelay schedule {schedule.name}\n",
            f"      ScheduleExpression: {schedule.expression}\n",
            f"      ScheduleExpressionTimezone: {schedule.timezone}\n",
            f"      State: {'ENABLED' if schedule.enabled else 'DISABLED'}\n",
            "      FlexibleTimeWindow:\n",
            '        Mode: "OFF"\n',
            "      Target:\n",
            "        Arn: !GetAtt JobRequestsQueue.Arn\n",
            "        RoleArn: !GetAtt SchedulerRole.Arn\n",
            f"        Input: '{input_json}'\n",
            "        RetryPolicy:\n",
            "          MaximumEventAgeInSeconds: 3600\n",
            "          MaximumRetryAttempts: 20\n",
            "        DeadLetterConfig:\n",
            "          Arn: !GetAtt SchedulerDLQ.Arn\n",
            "\n",
        ]
    lines.append(END)
    return "".join(lines)


def render_template(template_text: str, schedules: list[Schedule]) -> str:
    """template.yaml with its schedules section replaced by `schedules`."""
    start, end = template_text.find(BEGIN), template_text.find(END)
    if start < 0 or end < start:
        raise ScheduleError("template.yaml has no BEGIN/END schedules markers")
    return template_text[:start] + render_resources(schedules) + template_text[end + len(END) :]


def firing(
    schedule_input: str,
    *,
    schedule_arn: str,
    at: datetime | None = None,
    attempt: int = 1,
) -> str:
    """The message Scheduler sends for one firing of a schedule's target Input.

    Scheduler replaces the context attributes `<aws.scheduler.scheduled-time>`,
    `<aws.scheduler.execution-id>`, `<aws.scheduler.schedule-arn>` and
    `<aws.scheduler.attempt-number>` in the target's Input before sending it
    (EventBridge Scheduler user guide, "Adding context attributes").
    """
    when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    values = {
        SCHEDULED_TIME: when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.schedule-arn>": schedule_arn,
        "<aws.scheduler.attempt-number>": str(attempt),
    }
    body = schedule_input
    for placeholder, value in values.items():
        body = body.replace(placeholder, value)
    return body


@dataclass(frozen=True)
class DeployedSchedule:
    """A schedule as template.yaml declares it (what `sam deploy` would create)."""

    name: str
    expression: str
    timezone: str
    state: str
    input: str


def template_schedules(template_path: Path | None = None) -> dict[str, DeployedSchedule]:
    """The schedules in template.yaml, keyed by their short name."""
    template = load_template(template_path) if template_path else load_template()
    found: dict[str, DeployedSchedule] = {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Scheduler::Schedule":
            continue
        props = resource["Properties"]
        name_value = props["Name"]
        raw_name = name_value.get("Fn::Sub") if isinstance(name_value, dict) else name_value
        name = str(raw_name).replace("${AWS::StackName}-", "")
        found[name] = DeployedSchedule(
            name=name,
            expression=str(props["ScheduleExpression"]),
            timezone=str(props.get("ScheduleExpressionTimezone", "UTC")),
            state=str(props.get("State", "ENABLED")),
            input=str(props["Target"]["Input"]),
        )
    return found


def parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


if __name__ == "__main__":
    template_path = PROJECT_ROOT / "template.yaml"
    rendered = render_template(template_path.read_text(encoding="utf-8"), load_schedules())
    template_path.write_text(rendered, encoding="utf-8")
    print(f"rendered {len(load_schedules())} schedule(s) into {template_path.name}")
