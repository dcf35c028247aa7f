"""MinIO bucket events (S3 event format v2, as MinIO's webhook target sends them).

One POST carries one record::

    {"EventName": ..., "Key": "<bucket>/<unescaped key>", "Records": [{...}]}

``Records[].s3.object.key`` is URL-query-escaped (Go's ``url.QueryEscape``: ``/`` -> ``%2F``,
space -> ``+``, ``+`` -> ``%2B``); :func:`decode_key` undoes it. ``size``, ``eTag``,
``contentType``, ``userMetadata`` and ``versionId`` are omitted when empty (Go ``omitempty``).

:func:`render_body` produces the exact bytes MinIO's ``json.Marshal`` would: struct fields in
declaration order, map keys sorted, no spaces, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped,
other non-ASCII left as UTF-8. The local folder store uses it, so the trigger side cannot tell
the two sources apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote_plus, unquote_plus

from pydantic import BaseModel, ConfigDict, Field

OBJECT_CREATED = (
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectCreated:PutRetention",
    "s3:ObjectCreated:PutLegalHold",
    "s3:ObjectCreated:PutTagging",
    "s3:ObjectCreated:DeleteTagging",
)


def encode_key(key: str) -> str:
    """Escape a key the way MinIO puts it in ``s3.object.key`` (Go ``url.QueryEscape``)."""
    return quote_plus(key, safe="")


def decode_key(escaped: str) -> str:
    """The object key from ``s3.object.key`` (``urllib.parse.unquote_plus``)."""
    return unquote_plus(escaped)


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Identity(_Model):
    principal_id: str = Field("", alias="principalId")


class EventBucket(_Model):
    name: str
    owner_identity: Identity = Field(default_factory=Identity, alias="ownerIdentity")
    arn: str = ""


class EventObject(_Model):
    key: str
    size: int = 0
    etag: str = Field("", alias="eTag")
    content_type: str = Field("", alias="contentType")
    user_metadata: dict[str, str] = Field(default_factory=dict, alias="userMetadata")
    version_id: str = Field("", alias="versionId")
    sequencer: str = ""


class S3Entity(_Model):
    schema_version: str = Field("1.0", alias="s3SchemaVersion")
    configuration_id: str = Field("Config", alias="configurationId")
    bucket: EventBucket
    object: EventObject


class EventSource(_Model):
    host: str = ""
    port: str = ""
    user_agent: str = Field("", alias="userAgent")


class EventRecord(_Model):
    event_version: str = Field("2.0", alias="eventVersion")
    event_source: str = Field("minio:s3", alias="eventSource")
    aws_region: str = Field("", alias="awsRegion")
    event_time: str = Field(alias="eventTime")
    event_name: str = Field(alias="eventName")
    user_identity: Identity = Field(default_factory=Identity, alias="userIdentity")
    request_parameters: dict[str, str] = Field(default_factory=dict, alias="requestParameters")
    response_elements: dict[str, str] = Field(default_factory=dict, alias="responseElements")
    s3: S3Entity
    source: EventSource = Field(default_factory=EventSource)


class ObjectEvent(NamedTuple):
    """What a consumer needs from one record, with the key decoded."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    event_name: str
    metadata: dict[str, str]


class EventLog(_Model):
    """The webhook body: ``{"EventName", "Key", "Records"}``."""

    event_name: str = Field(alias="EventName")
    key: str = Field(alias="Key")
    records: list[EventRecord] = Field(alias="Records")

    def objects(self) -> list[ObjectEvent]:
        """One :class:`ObjectEvent` per record (keys decoded, empty version id as ``None``)."""
        return [record_object(r) for r in self.records]


def record_object(record: EventRecord) -> ObjectEvent:
    obj = record.s3.object
    return ObjectEvent(
        bucket=record.s3.bucket.name,
        key=decode_key(obj.key),
        size=obj.size,
        etag=obj.etag,
        version_id=obj.version_id or None,
        event_name=record.event_name,
        metadata=dict(obj.user_metadata),
    )


def event_time(at: datetime) -> str:
    """MinIO's ``eventTime``: UTC, milliseconds, ``Z`` (Go layout ``2006-01-02T15:04:05.000Z``)."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def object_created(
    *,
    event_name: str,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    content_type: str,
    user_metadata: dict[str, str],
    version_id: str | None,
    at: datetime,
    sequencer: str,
    request_id: str,
    principal: str,
    source_host: str,
    user_agent: str,
    region: str = "",
    deployment_id: str = "",
    origin_endpoint: str = "",
    amz_id_2: str = "",
    source_port: str = "",
    configuration_id: str = "Config",
    content_length: str = "",
) -> EventLog:
    """Build the event MinIO sends for one created object (``key`` unescaped).

    ``content_length`` is the Content-Length of MinIO's reply to the request, which its
    responseElements carry when set (cmd/event-notification.go ToEvent, from
    extractRespElements): a CompleteMultipartUpload has an XML reply, a PUT an empty one.
    """
    response_elements = {
        "x-amz-id-2": amz_id_2,
        "x-amz-request-id": request_id,
        "x-minio-deployment-id": deployment_id,
        "x-minio-origin-endpoint": origin_endpoint,
    }
    if content_length:
        response_elements["content-length"] = content_length
    record = EventRecord(
        aws_region=region,
        event_time=event_time(at),
        event_name=event_name,
        user_identity=Identity(principal_id=principal),
        request_parameters={
            "principalId": principal,
            "region": region,
            "sourceIPAddress": source_host,
        },
        response_elements=response_elements,
        s3=S3Entity(
            configuration_id=configuration_id,
            bucket=EventBucket(
                name=bucket,
                owner_identity=Identity(principal_id=principal),
                arn=f"arn:aws:s3:::{bucket}",
            ),
            object=EventObject(
                key=encode_key(key),
                size=size,
                etag=etag,
                content_type=content_type,
                user_metadata=user_metadata,
                version_id=version_id or "",
                sequencer=sequencer,
            ),
        ),
        source=EventSource(host=source_host, port=source_port, user_agent=user_agent),
    )
    return EventLog(event_name=event_name, key=f"{bucket}/{key}", records=[record])


# Go omitempty on these fields of the object struct; maps are sorted by json.Marshal.
_OMIT_EMPTY = ("size", "eTag", "contentType", "userMetadata", "versionId")
_MAPS = ("requestParameters", "responseElements")


def _go_shape(log: EventLog) -> dict[str, Any]:
    body = log.model_dump(by_alias=True)
    for rec in body["Records"]:
        for name in _MAPS:
            rec[name] = dict(sorted(rec[name].items()))
        obj = rec["s3"]["object"]
        obj["userMetadata"] = dict(sorted(obj["userMetadata"].items()))
        for name in _OMIT_EMPTY:
            if not obj[name]:
                del obj[name]
    return body


def render_body(log: EventLog) -> bytes:
    """The exact webhook body bytes MinIO sends for ``log``."""
    out: list[str] = []
    _encode(_go_shape(log), out)
    return "".join(out).encode("utf-8")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    # Go escapes these for safe embedding in HTML and JavaScript.
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _encode_str(s: str, out: list[str]) -> None:
    out.append('"')
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append(f"\\u00{ord(ch):02x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")  # Go replaces invalid UTF-8 with U+FFFD
        else:
            out.append(ch)
    out.append('"')


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            _encode_str(str(k), out)
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    elif isinstance(value, str):
        _encode_str(value, out)
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(value))
    elif value is None:
        out.append("null")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as an event field")


def parse_body(body: bytes | str) -> EventLog:
    """Validate a webhook body (raises ``pydantic.ValidationError`` or ``ValueError``)."""
    return EventLog.model_validate_json(body)
