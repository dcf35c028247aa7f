"""The messages OpenWhisk answers with, word for word, so callers can match on them.

Most come from apache/openwhisk common/scala/src/main/scala/org/apache/openwhisk/http/
ErrorResponse.scala (``Messages``).
"""

from __future__ import annotations

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
MAX_PAYLOAD_BYTES = 1024 * 1024
NOT_DICT = "The action did not return a dictionary or array."
REINIT = "Cannot initialize the action more than once."
# With the `final` annotation, overriding a bound parameter is refused with this message.
PARAMS_NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."
ABNORMAL_EXIT = "The action did not produce a valid response and exited unexpectedly."
ABNORMAL_INIT = "The action did not initialize and exited unexpectedly."
OUT_OF_MEMORY = "The action exhausted its memory and was aborted."
START_FAILED = "Cannot start action. Check logs for details."


def timed_out(limit_ms: int, init: bool = False) -> str:
    end = " during initialization." if init else "."
    return f"The action exceeded its time limits of {limit_ms} milliseconds{end}"


def invalid_runtime(kind: str, kinds: tuple[str, ...]) -> str:
    valid = ", ".join(f"'{k}'" for k in kinds)
    return f"The specified runtime '{kind}' is not supported by this platform. Valid values are: {valid}."


def too_many_concurrent(count: int, allowed: int) -> str:
    return f"Too many concurrent requests in flight (count: {count}, allowed: {allowed})."


def response_too_large(size: int, limit: int = MAX_PAYLOAD_BYTES) -> str:
    return f"{RESPONSE_TOO_LARGE_PREFIX}{size} > {limit} bytes."


RESPONSE_TOO_LARGE_PREFIX = "The action produced a response that exceeded the allowed length: "


def is_response_too_large(message: object) -> bool:
    """Whether an activation's error is the oversized-result one (the API answers it with 413)."""
    return isinstance(message, str) and message.startswith(RESPONSE_TOO_LARGE_PREFIX)


def request_too_large(size: int, limit: int = MAX_PAYLOAD_BYTES) -> str:
    return f"Request larger than allowed: {size} > {limit} bytes."


def logs_truncated(limit_bytes: int) -> str:
    return f"Logs were truncated because the total bytes size exceeds the limit of {limit_bytes} bytes."


def container_failed(reason: str) -> str:
    return f"Failed to provision resources to run the action. ({reason})"


NOT_FOUND = "The requested resource does not exist."
EXISTS = "resource already exists"  # ApiUtils.scala putEntity without overwrite
SEQUENCE_NO_COMPONENT = "No component specified for the sequence."
SEQUENCE_CYCLIC = "Sequence may not refer to itself."
RULE_NEEDS_TRIGGER_AND_ACTION = "rule requires a valid trigger and a valid action"  # Rules.scala
ACTIVATION_ID_ILLEGAL = "The activation id is not valid."
DOCS_WITH_COUNT = "The parameter 'docs' is not permitted with 'count'."
MAX_LIST_LIMIT = 200  # entitlement/Collection.scala MAX_LIST_LIMIT


def activation_id_length(length: int) -> str:
    return f"Activation id length is {length} but must be 32."


def list_limit_out_of_range(collection: str, value: int, limit: int = MAX_LIST_LIMIT) -> str:
    return f"The value '{value}' is not in the range of 0 to {limit} for {collection}."


def list_skip_out_of_range(collection: str, value: int) -> str:
    return f"The value '{value}' is not greater than or equal to 0 for {collection}."


def not_an_integer(collection: str, value: str) -> str:
    return f"The value '{value}' is not an integer for {collection}."


def bad_name_filter(value: str) -> str:
    return f"Parameter may be a 'simple' name or 'package-name/simple' name: {value}"
