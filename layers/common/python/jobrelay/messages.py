"""The queue's messages as CreateJob reads them: a create (`JobRequest`) or a cancel, parsed
once with every offending field named, and the idempotency key each one goes by."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from jobrelay import registry
from jobrelay.errors import FieldProblem, RequestInvalid
from jobrelay.models import METADATA_ADAPTER, REQUEST_ID_ADAPTER, CancelRequest
from jobrelay.registry import PROVIDER_NAMES, REGISTRY, request_model

if TYPE_CHECKING:
    from jobrelay.registry import JobRequest


class QueueMessage(NamedTuple):
    """One SQS record as CreateJob sees it; `request_key` is the idempotency key, `sender`
    the SQS sender id (who asked, for a cancel that does not say). A NamedTuple: its fields
    are the record's own, and the body is validated by the request's model (`parse_message`).
    """

    message_id: str
    body: str
    request_key: str
    sender: str | None = None

    @classmethod
    def from_record(cls, message_id: str, body: str, sender: str | None = None) -> QueueMessage:
        return cls(
            message_id=message_id,
            body=body,
            request_key=request_key(message_id, body),
            sender=sender,
        )


def request_key(message_id: str, body: str) -> str:
    """The request's id when the body carries a well-formed one, else the SQS message id. A
    cancel is a message of its own: `cancel:<request id>`, so it never shares its request's
    idempotency record."""
    loose = _loose_body(body)
    try:
        request_id = REQUEST_ID_ADAPTER.validate_python(loose.get("request_id"), strict=True)
    except ValidationError:
        return message_id
    return f"cancel:{request_id}" if loose.get("action") == "cancel" else request_id


def parse_request(body: str) -> JobRequest:
    """The body as a `JobRequest`, or `RequestInvalid` naming every offending field."""
    message = parse_message(body)
    if isinstance(message, CancelRequest):
        raise RequestInvalid(
            "a cancel is not a request",
            [FieldProblem(field="action", message="expected 'create'", kind="literal_error")],
        )
    return message


def parse_message(body: str) -> JobRequest | CancelRequest:
    """The body as a create (`JobRequest`, `action` absent or `"create"`) or a cancel
    (`CancelRequest`), or `RequestInvalid` naming every offending field."""
    try:
        # NaN and Infinity parse here and are refused by the models, field by field.
        raw: Any = _decoded(body)
    except (ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser's stack; refused, not crashed on.
        message = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise RequestInvalid(
            f"the message body is not JSON we accept: {message}",
            [FieldProblem(field="body", message=message, kind="json_invalid")],
        ) from exc
    if not isinstance(raw, dict):
        raise RequestInvalid(
            "the message body must be a JSON object",
            [FieldProblem(field="body", message="expected an object", kind="type_error")],
        )
    action = raw.get("action")
    if action not in (None, "create", "cancel"):
        raise RequestInvalid(
            "invalid request: action: expected 'create' or 'cancel'",
            [FieldProblem(field="action", message="expected 'create' or 'cancel'", kind="enum")],
        )
    # A create naming a known provider is validated by that provider's model alone, which is
    # the model the union's discriminator would pick: the other providers' models are never
    # made. Any other create goes through the union, for its errors.
    provider = raw.get("provider")
    own = isinstance(provider, str) and provider in REGISTRY and action != "cancel"
    try:
        if action == "cancel":
            return CancelRequest.model_validate(raw)
        if own:
            return request_model(str(provider)).model_validate(raw)
        return registry.JOB_REQUEST_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = [
            FieldProblem(
                field=_field_name(error, tagged=not own), message=error["msg"], kind=error["type"]
            )
            for error in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
        raise RequestInvalid(f"invalid request: {summary}", problems) from exc


# Parts of a pydantic error location that name a union member or a validator, not a field.
_UNION_MEMBER_TAGS = frozenset({"str", "int", "float", "bool", "none", "[key]"})


def _field_name(error: ErrorDetails, *, tagged: bool) -> str:
    """The offending field as a dotted path, without the union and validator tags pydantic
    puts in locations (`metadata.team.str` is reported as `metadata.team`); `tagged`: the
    error is the request union's, its location led by the provider's tag."""
    if error["type"].startswith("union_tag"):
        return "provider"
    loc = [str(part) for part in error["loc"]]
    if tagged and loc and loc[0] in PROVIDER_NAMES:
        loc = loc[1:]
    loc = [part for part in loc if part not in _UNION_MEMBER_TAGS and "[" not in part]
    return ".".join(loc) or "body"


@lru_cache(maxsize=64)
def _decoded(body: str) -> Any:
    """The body's JSON, decoded once for its key, its parse and its hints (a batch's bodies
    are read by several of these in turn; nothing here changes what it gets)."""
    return json.loads(body)


def _loose_body(body: str) -> dict[str, Any]:
    try:
        raw = _decoded(body)
    except (ValueError, RecursionError):
        return {}
    return raw if isinstance(raw, dict) else {}


def provider_hint(body: str) -> str | None:
    provider = _loose_body(body).get("provider")
    return provider if provider in PROVIDER_NAMES else None


def metadata_hint(body: str) -> dict[str, Any]:
    """Echo a rejected request's metadata only when it is itself valid."""
    try:
        return METADATA_ADAPTER.validate_python(_loose_body(body).get("metadata", {}))
    except ValidationError:
        return {}
