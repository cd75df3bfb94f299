"""GenAI semantics of one span: what kind of step it is, which model, tokens, cost, tool, retries.

Reads both conventions an agent's spans arrive in:

- OpenTelemetry GenAI semantic conventions, current and older names: ``gen_ai.operation.name``,
  ``gen_ai.provider.name``/``gen_ai.system``, ``gen_ai.response.model`` (preferred) /
  ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``/``output_tokens`` (older
  ``prompt_tokens``/``completion_tokens``), ``gen_ai.usage.cache_read.input_tokens``,
  ``gen_ai.tool.name``, ``gen_ai.agent.name``, ``gen_ai.usage.cost``; span names such as
  ``execute_tool get_weather`` when the operation attribute is missing.
- OpenInference: ``openinference.span.kind``, ``llm.model_name`` (``embedding.model_name``),
  ``llm.provider``/``llm.system``, ``llm.token_count.prompt|completion|total``,
  ``llm.token_count.prompt_details.cache_read``, ``tool.name``, ``llm.cost.total`` (or
  ``llm.cost.prompt`` + ``llm.cost.completion``).

Also ``traceloop.span.kind`` (OpenLLMetry: workflow/task → chain, agent, tool) and TraceFoundry's
own ``tracefoundry.span_type``, ``tracefoundry.cost_usd``, ``tracefoundry.retry``,
``tracefoundry.timeout``.

Span type, first rule that applies: ``tracefoundry.span_type``; the OpenInference kind (LLM and
EMBEDDING → llm, RERANKER → retriever, GUARDRAIL/EVALUATOR/PROMPT → other); the GenAI operation
(``execute_tool`` → tool, ``invoke_agent``/``create_agent`` → agent, chat, text_completion,
embeddings, generate_content → llm); the OpenLLMetry kind; the operation named by the span name's
first word; a tool name → tool; a model with token counts or a provider → llm; an agent name alone
→ agent; else other.

Cost: the span's own (``tracefoundry.cost_usd``, ``gen_ai.usage.cost``, ``llm.cost.total``, the
OpenInference prompt + completion parts), else ``traces.cost.cost_for`` from the price table, else
None. A missing input or output count is derived from a total count when there is one.

Retries: ``retry.count``/``retry.attempt``/``http.request.resend_count`` above 0,
``gen_ai.request.retry``/``tracefoundry.retry`` truthy, or an event named ``retry``/``retrying`` or
ending in ``.retry``/``_retry``/``.retrying``. Timeouts: an ``exception`` event whose type contains
"timeout" or "deadline" (``httpx.ReadTimeout``, ``openai.APITimeoutError``, gRPC
``DeadlineExceeded``) or whose message says it timed out; an event named ``timeout`` or ending in
``.timeout``/``_timeout``; ``error.type``/``exception.type`` attributes likewise; a status message
that says so; HTTP status 408 or 504; gRPC status 4 (DEADLINE_EXCEEDED); ``tracefoundry.timeout``.

``extract`` never raises. Values of the wrong type are coerced where the meaning is clear (``"12"``
tokens, ``"true"`` flags, ``"0.01"`` cost) and ignored otherwise; negative or absurd counts (over
2^31-1) and costs (negative, not finite, from 10^8 USD) are ignored; texts are stripped and cut to
255 characters.

Speed: this runs for every ingested span. A span without any watched attribute key, events or
status message (most HTTP/DB spans) costs one set-disjointness test and returns a shared constant;
GenAI work happens only for spans that carry GenAI keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from traces.cost import COST_PLACES, MAX_COST_USD, MAX_TOKENS, cost_for

logger = logging.getLogger(__name__)

SPAN_TYPES = ("llm", "tool", "agent", "chain", "retriever", "other")
MAX_TEXT_LENGTH = 255  # model, tool name, system, operation


@dataclass(frozen=True, slots=True)
class GenAI:
    span_type: str  # one of SPAN_TYPES
    model: str  # "" when unknown
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: Decimal | None  # given on the span, else computed from the price table, else None
    tool_name: str  # "" when not a tool span
    is_retry: bool
    is_timeout: bool
    system: str  # gen_ai.provider.name / gen_ai.system / llm.provider, lower-case, "" if unknown
    operation: str  # gen_ai.operation.name or the OpenInference kind, lower-case, "" if unknown


PLAIN = GenAI("other", "", None, None, None, "", False, False, "", "")

# --- attribute names --------------------------------------------------------------------------

_MODEL_KEYS = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "embedding.model_name",
    "llm.response.model",
    "llm.request.model",
)
_INPUT_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
)
_OUTPUT_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
)
_TOTAL_KEYS = ("gen_ai.usage.total_tokens", "llm.token_count.total", "llm.usage.total_tokens")
_CACHED_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
_SYSTEM_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_TOOL_KEYS = ("gen_ai.tool.name", "tool.name")
_COST_KEYS = ("tracefoundry.cost_usd", "gen_ai.usage.cost", "llm.cost.total")
_COST_PART_KEYS = ("llm.cost.prompt", "llm.cost.completion")
_TYPE_KEYS = (
    "tracefoundry.span_type",
    "openinference.span.kind",
    "gen_ai.operation.name",
    "traceloop.span.kind",
    "traceloop.entity.name",
    "gen_ai.agent.name",
)
_GENAI_KEYS = frozenset(
    _MODEL_KEYS
    + _INPUT_KEYS
    + _OUTPUT_KEYS
    + _TOTAL_KEYS
    + _CACHED_KEYS
    + _SYSTEM_KEYS
    + _TOOL_KEYS
    + _COST_KEYS
    + _COST_PART_KEYS
    + _TYPE_KEYS
)

_RETRY_COUNT_KEYS = ("retry.count", "retry.attempt", "http.request.resend_count")
_RETRY_FLAG_KEYS = ("gen_ai.request.retry", "tracefoundry.retry")
_TIMEOUT_TYPE_KEYS = ("error.type", "exception.type")
_TIMEOUT_FLAG_KEYS = ("tracefoundry.timeout",)
_FLAG_KEYS = frozenset(
    _RETRY_COUNT_KEYS + _RETRY_FLAG_KEYS + _TIMEOUT_TYPE_KEYS + _TIMEOUT_FLAG_KEYS
)
# Present on nearly every HTTP/RPC span, so looked up directly rather than watched.
_HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")
_HTTP_TIMEOUT_STATUSES = (408, 504, "408", "504")
_GRPC_STATUS_KEY = "rpc.grpc.status_code"
_GRPC_DEADLINE_EXCEEDED = (4, "4")

_WATCHED_KEYS = _GENAI_KEYS | _FLAG_KEYS
# Every span attribute `extract` reads (event attributes: exception.type, exception.message), for
# whoever filters attributes before extraction — e.g. the strict redaction policy's allowlist.
ATTRIBUTE_KEYS = _WATCHED_KEYS | frozenset(_HTTP_STATUS_KEYS) | {_GRPC_STATUS_KEY}

# --- value maps -------------------------------------------------------------------------------

_OPENINFERENCE_TYPES = {
    "LLM": "llm",
    "EMBEDDING": "llm",
    "TOOL": "tool",
    "AGENT": "agent",
    "CHAIN": "chain",
    "RETRIEVER": "retriever",
    "RERANKER": "retriever",
    "GUARDRAIL": "other",
    "EVALUATOR": "other",
    "PROMPT": "other",
    "UNKNOWN": "other",
}
_OPERATION_TYPES = {
    "chat": "llm",
    "text_completion": "llm",
    "completion": "llm",
    "embeddings": "llm",
    "generate_content": "llm",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}
_TRACELOOP_TYPES = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
_SPAN_TYPE_SET = frozenset(SPAN_TYPES)
_TRUE_TEXTS = frozenset({"true", "t", "yes", "y", "on", "1"})
_TOOL_NAME_PREFIX = "execute_tool "

_RETRY_EVENT_NAMES = frozenset({"retry", "retrying"})
_RETRY_EVENT_SUFFIXES = (".retry", "_retry", ".retrying")
_TIMEOUT_EVENT_NAMES = frozenset({"timeout"})
_TIMEOUT_EVENT_SUFFIXES = (".timeout", "_timeout")
_TIMEOUT_TEXT = re.compile(r"\btimed?[\s_-]?out\b|timeout|deadline[\s_-]?exceeded", re.IGNORECASE)


# --- extraction -------------------------------------------------------------------------------


def extract(
    *,
    name: str,
    kind: str,
    attributes: dict,
    events: list[dict],
    status_code: str,
    status_message: str,
) -> GenAI:
    """The GenAI columns of one span. Never raises; see the module docstring for the rules."""
    try:
        return _extract(name, attributes, events, status_message)
    except Exception:  # a bug here must not cost the span; the columns are a convenience
        logger.exception("GenAI extraction failed for span %.100r", name)
        return PLAIN


def _extract(name: object, attributes: object, events: object, status_message: object) -> GenAI:
    attrs = _as_dict(attributes)
    has_events = isinstance(events, list | tuple) and len(events) > 0
    has_message = isinstance(status_message, str) and len(status_message) > 0
    timeout_status = _timeout_status(attrs)
    if _WATCHED_KEYS.isdisjoint(attrs) and not has_events and not has_message:
        if not timeout_status:
            return PLAIN
        return GenAI("other", "", None, None, None, "", False, True, "", "")

    is_retry, is_timeout = _retry_and_timeout(attrs)
    if has_events:
        event_retry, event_timeout = _events_retry_and_timeout(events)
        is_retry = is_retry or event_retry
        is_timeout = is_timeout or event_timeout
    is_timeout = is_timeout or timeout_status or (has_message and _says_timeout(status_message))
    if _GENAI_KEYS.isdisjoint(attrs):
        if not is_retry and not is_timeout:
            return PLAIN
        return GenAI("other", "", None, None, None, "", is_retry, is_timeout, "", "")
    return _genai(name if isinstance(name, str) else "", attrs, is_retry, is_timeout)


def _genai(name: str, attrs: dict, is_retry: bool, is_timeout: bool) -> GenAI:
    model = _first_text(attrs, _MODEL_KEYS)
    system = _first_text(attrs, _SYSTEM_KEYS).lower()
    input_tokens = _first_count(attrs, _INPUT_KEYS)
    output_tokens = _first_count(attrs, _OUTPUT_KEYS)
    if input_tokens is None or output_tokens is None:
        total = _first_count(attrs, _TOTAL_KEYS)
        if total is not None:
            if input_tokens is None and output_tokens is not None and total >= output_tokens:
                input_tokens = total - output_tokens
            elif output_tokens is None and input_tokens is not None and total >= input_tokens:
                output_tokens = total - input_tokens

    oi_kind = _text(attrs.get("openinference.span.kind")).upper()
    gen_ai_operation = _text(attrs.get("gen_ai.operation.name")).lower()
    traceloop_kind = _text(attrs.get("traceloop.span.kind")).lower()
    name_operation = name.split(" ", 1)[0].strip().lower()
    if name_operation not in _OPERATION_TYPES:
        name_operation = ""
    operation = gen_ai_operation or oi_kind.lower() or name_operation or traceloop_kind

    tool_attr = _first_text(attrs, _TOOL_KEYS)
    has_tokens = input_tokens is not None or output_tokens is not None
    declared = _text(attrs.get("tracefoundry.span_type")).lower()
    span_type = (
        (declared if declared in _SPAN_TYPE_SET else None)
        or _OPENINFERENCE_TYPES.get(oi_kind)
        or _OPERATION_TYPES.get(gen_ai_operation)
        or _TRACELOOP_TYPES.get(traceloop_kind)
        or _OPERATION_TYPES.get(name_operation)
        or ("tool" if tool_attr else None)
        or ("llm" if model and (has_tokens or system) else None)
        or ("agent" if _text(attrs.get("gen_ai.agent.name")) else None)
        or "other"
    )

    tool_name = ""
    if span_type == "tool":
        tool_name = tool_attr
        if not tool_name and traceloop_kind == "tool":
            tool_name = _text(attrs.get("traceloop.entity.name"))
        if not tool_name:
            stripped = name.strip()
            if stripped.startswith(_TOOL_NAME_PREFIX):
                stripped = stripped[len(_TOOL_NAME_PREFIX) :].strip()
            tool_name = stripped[:MAX_TEXT_LENGTH]

    cost = _given_cost(attrs)
    if cost is None and model and has_tokens:
        cost = cost_for(
            model,
            input_tokens,
            output_tokens,
            cached_input_tokens=_first_count(attrs, _CACHED_KEYS),
        )

    return GenAI(
        span_type=span_type,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        tool_name=tool_name,
        is_retry=is_retry,
        is_timeout=is_timeout,
        system=system,
        operation=operation[:MAX_TEXT_LENGTH],
    )


# --- retries and timeouts ---------------------------------------------------------------------


def _timeout_status(attrs: dict) -> bool:
    for key in _HTTP_STATUS_KEYS:
        code = attrs.get(key)
        if code is not None:
            return code in _HTTP_TIMEOUT_STATUSES
    return attrs.get(_GRPC_STATUS_KEY) in _GRPC_DEADLINE_EXCEEDED


def _retry_and_timeout(attrs: dict) -> tuple[bool, bool]:
    if _FLAG_KEYS.isdisjoint(attrs):
        return False, False
    is_retry = any(_count(attrs.get(key)) for key in _RETRY_COUNT_KEYS) or any(
        _flag(attrs.get(key)) for key in _RETRY_FLAG_KEYS
    )
    is_timeout = any(_names_timeout(attrs.get(key)) for key in _TIMEOUT_TYPE_KEYS) or any(
        _flag(attrs.get(key)) for key in _TIMEOUT_FLAG_KEYS
    )
    return is_retry, is_timeout


def event_retry_and_timeout(event: object) -> tuple[bool, bool]:
    """Whether one span event marks a retry, and whether it marks a timeout (the rules in this
    module's docstring); the span page shows these per event (``SpanSerializer``)."""
    if not isinstance(event, dict):
        return False, False
    event_name = event.get("name")
    if not isinstance(event_name, str):
        return False, False
    event_name = event_name.strip().lower()
    if event_name == "exception":
        attrs = event.get("attributes")
        return False, isinstance(attrs, dict) and bool(
            _names_timeout(attrs.get("exception.type"))
            or _says_timeout(attrs.get("exception.message"))
        )
    if event_name in _RETRY_EVENT_NAMES or event_name.endswith(_RETRY_EVENT_SUFFIXES):
        return True, False
    return False, event_name in _TIMEOUT_EVENT_NAMES or event_name.endswith(
        _TIMEOUT_EVENT_SUFFIXES)


def _events_retry_and_timeout(events: list | tuple) -> tuple[bool, bool]:
    is_retry = is_timeout = False
    for event in events:
        retry, timeout = event_retry_and_timeout(event)
        is_retry, is_timeout = is_retry or retry, is_timeout or timeout
        if is_retry and is_timeout:
            break
    return is_retry, is_timeout


def _names_timeout(value: object) -> bool:
    """An exception or error type naming a timeout: TimeoutError, ReadTimeout, DeadlineExceeded."""
    if not isinstance(value, str):
        return False
    lowered = value.lower()
    return "timeout" in lowered or "deadline" in lowered


def _says_timeout(value: object) -> bool:
    return isinstance(value, str) and _TIMEOUT_TEXT.search(value[:4096]) is not None


# --- value coercion ---------------------------------------------------------------------------


def _as_dict(value: object) -> dict:
    if type(value) is dict:
        return value
    if isinstance(value, Mapping):
        try:
            return {k: v for k, v in value.items() if isinstance(k, str)}
        except Exception:
            return {}
    return {}


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()[:MAX_TEXT_LENGTH]
    return ""


def _first_text(attrs: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        text = _text(attrs.get(key))
        if text:
            return text
    return ""


def _count(value: object) -> int | None:
    """A token count or retry number: a non-negative int (from int, integral float or digits)."""
    if type(value) is int:
        number = value
    elif type(value) is float:
        if not value.is_integer():  # also rejects nan and infinities
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 20:
            return None
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                return None
            if not as_float.is_integer():
                return None
            number = int(as_float)
    else:  # bool, None, lists, dicts…
        return None
    if 0 <= number <= MAX_TOKENS:
        return number
    return None


def _first_count(attrs: dict, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            number = _count(value)
            if number is not None:
                return number
    return None


def _flag(value: object) -> bool:
    if value is True:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXTS
    if type(value) is int or type(value) is float:
        return value > 0
    return False


def _money(value: object) -> Decimal | None:
    """A USD amount: non-negative, finite, below MAX_COST_USD, rounded to 8 places."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | float):
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            amount = Decimal(value.strip().removeprefix("$"))
        except InvalidOperation:
            return None
    else:
        return None
    if not amount.is_finite() or amount < 0 or amount >= MAX_COST_USD:
        return None
    return amount.quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def _given_cost(attrs: dict) -> Decimal | None:
    for key in _COST_KEYS:
        value = attrs.get(key)
        if value is not None:
            amount = _money(value)
            if amount is not None:
                return amount
    prompt, completion = (attrs.get(key) for key in _COST_PART_KEYS)
    if prompt is None and completion is None:
        return None
    parts = [amount for amount in (_money(prompt), _money(completion)) if amount is not None]
    if not parts:
        return None
    total = sum(parts, Decimal(0))
    return total if total < MAX_COST_USD else None
