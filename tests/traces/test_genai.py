"""GenAI extraction from spans (both conventions) and costs from the model price table."""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from traces import cost
from traces.cost import Price, cost_for, load_prices, model_prices_configured, price_for
from traces.genai import ATTRIBUTE_KEYS, PLAIN, SPAN_TYPES, GenAI, extract

PRICES_YAML = """
version: 1
models:
  gpt-4o:
    input: 2.50
    cached_input: 1.25
    output: 10.00
  gpt-4o-2024-05-13:
    input: "5.00"
    output: "15.00"
    match: exact
  gpt-4o-mini:
    input: 0.15
    output: 0.60
  claude-3-5-sonnet:
    input: 3
    output: 15
    aliases: [claude-3.5-sonnet]
  text-embedding-3-small:
    input: 0.02
    output: 0
  meta-llama/llama-3.3-70b-instruct-turbo:
    input: 0.88
    output: 0.88
  llama3-3-70b-instruct:
    input: 0.72
    output: 0.72
"""


@pytest.fixture
def price_file(tmp_path, settings) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES_YAML, encoding="utf-8")
    settings.TRACEFOUNDRY_MODEL_PRICES = path
    return path


def span(
    attributes: object = None,
    *,
    name: object = "span",
    kind: object = "internal",
    events: object = None,
    status_code: object = "unset",
    status_message: object = "",
) -> GenAI:
    return extract(
        name=name,
        kind=kind,
        attributes={} if attributes is None else attributes,
        events=[] if events is None else events,
        status_code=status_code,
        status_message=status_message,
    )


def exception_event(exc_type: str, message: str = "") -> dict:
    return {
        "name": "exception",
        "time_unix_nano": 1,
        "attributes": {"exception.type": exc_type, "exception.message": message},
    }


# --- plain spans ------------------------------------------------------------------------------


def test_plain_http_span_is_other_with_nothing_extracted():
    result = span(
        {"http.request.method": "GET", "http.response.status_code": 200, "url.path": "/x"},
        name="GET /x",
        kind="server",
    )
    assert result == PLAIN
    assert result.span_type == "other"
    assert (result.model, result.tool_name, result.system, result.operation) == ("", "", "", "")
    assert result.input_tokens is None and result.cost_usd is None
    assert not result.is_retry and not result.is_timeout


def test_span_types_are_the_documented_ones():
    assert SPAN_TYPES == ("llm", "tool", "agent", "chain", "retriever", "other")


# --- OpenTelemetry GenAI semantic conventions -------------------------------------------------


def test_semconv_chat_span(price_file):
    result = span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 500,
        },
        name="chat gpt-4o",
        kind="client",
    )
    assert result.span_type == "llm"
    assert result.operation == "chat"
    assert result.system == "openai"
    assert result.model == "gpt-4o-2024-08-06"  # the response model wins
    assert (result.input_tokens, result.output_tokens) == (1000, 500)
    # 1000 * 2.50 / 1M + 500 * 10 / 1M
    assert result.cost_usd == Decimal("0.00750000")
    assert result.tool_name == ""


def test_semconv_request_model_when_no_response_model(price_file):
    result = span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"})
    assert result.model == "gpt-4o-mini"
    result = span({"gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "  "})
    assert result.model == "gpt-4o-mini"


def test_semconv_old_token_names_and_gen_ai_system(price_file):
    result = span(
        {
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 2000,
            "gen_ai.usage.completion_tokens": 1000,
        }
    )
    assert result.span_type == "llm"  # a model with token counts is an LLM call
    assert result.system == "openai"
    assert (result.input_tokens, result.output_tokens) == (2000, 1000)
    assert result.cost_usd == Decimal("0.00090000")


def test_semconv_new_token_names_win_over_old(price_file):
    result = span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.prompt_tokens": 99,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.completion_tokens": 99,
        }
    )
    assert (result.input_tokens, result.output_tokens) == (10, 20)


def test_provider_name_wins_over_system():
    result = span({"gen_ai.provider.name": "aws.bedrock", "gen_ai.system": "anthropic"})
    assert result.system == "aws.bedrock"


@pytest.mark.parametrize(
    ("operation", "span_type"),
    [
        ("chat", "llm"),
        ("text_completion", "llm"),
        ("embeddings", "llm"),
        ("generate_content", "llm"),
        ("execute_tool", "tool"),
        ("invoke_agent", "agent"),
        ("create_agent", "agent"),
        ("Chat", "llm"),
        ("something_new", "other"),
    ],
)
def test_semconv_operation_decides_span_type(operation, span_type):
    result = span({"gen_ai.operation.name": operation})
    assert result.span_type == span_type
    assert result.operation == operation.lower()


def test_semconv_tool_span_names_the_tool():
    result = span(
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"},
        name="execute_tool get_weather",
    )
    assert (result.span_type, result.tool_name) == ("tool", "get_weather")


def test_tool_name_from_span_name_strips_the_semconv_prefix():
    result = span({"gen_ai.operation.name": "execute_tool"}, name="execute_tool search_web")
    assert result.tool_name == "search_web"
    result = span({"gen_ai.operation.name": "execute_tool"}, name="lookup")
    assert result.tool_name == "lookup"


def test_operation_from_span_name_when_attribute_missing():
    result = span({"gen_ai.tool.call.id": "x", "gen_ai.system": "openai"}, name="execute_tool grep")
    assert (result.span_type, result.operation, result.tool_name) == (
        "tool",
        "execute_tool",
        "grep",
    )
    result = span({"gen_ai.agent.name": "planner"}, name="invoke_agent planner")
    assert (result.span_type, result.operation) == ("agent", "invoke_agent")


def test_tool_name_attribute_alone_makes_a_tool_span():
    assert span({"gen_ai.tool.name": "grep"}).span_type == "tool"
    assert span({"tool.name": "grep"}).tool_name == "grep"


def test_agent_name_alone_makes_an_agent_span():
    result = span({"gen_ai.agent.name": "researcher"}, name="researcher")
    assert result.span_type == "agent"


def test_non_tool_span_has_no_tool_name():
    result = span({"openinference.span.kind": "LLM", "tool.name": "grep"})
    assert (result.span_type, result.tool_name) == ("llm", "")


def test_model_with_provider_but_no_tokens_is_llm():
    result = span({"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet"})
    assert result.span_type == "llm"
    assert result.cost_usd is None  # no tokens, no cost


# --- OpenInference ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "span_type"),
    [
        ("LLM", "llm"),
        ("EMBEDDING", "llm"),
        ("TOOL", "tool"),
        ("AGENT", "agent"),
        ("CHAIN", "chain"),
        ("RETRIEVER", "retriever"),
        ("RERANKER", "retriever"),
        ("GUARDRAIL", "other"),
        ("EVALUATOR", "other"),
        ("UNKNOWN", "other"),
        ("chain", "chain"),
        ("NOT_A_KIND", "other"),
    ],
)
def test_openinference_kind_decides_span_type(kind, span_type):
    result = span({"openinference.span.kind": kind})
    assert result.span_type == span_type
    assert result.operation == kind.lower()


def test_openinference_llm_span(price_file):
    result = span(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-3-5-sonnet-20241022",
            "llm.provider": "anthropic",
            "llm.system": "anthropic",
            "llm.token_count.prompt": 1_000_000,
            "llm.token_count.completion": 100_000,
            "llm.token_count.total": 1_100_000,
            "input.value": "hello",
        },
        name="ChatAnthropic",
    )
    assert result.span_type == "llm"
    assert result.operation == "llm"
    assert result.model == "claude-3-5-sonnet-20241022"
    assert result.system == "anthropic"
    assert (result.input_tokens, result.output_tokens) == (1_000_000, 100_000)
    assert result.cost_usd == Decimal("4.50000000")  # 3 + 1.5


def test_openinference_llm_system_when_no_provider():
    assert span({"llm.system": "openai", "openinference.span.kind": "LLM"}).system == "openai"


def test_openinference_tool_span():
    result = span({"openinference.span.kind": "TOOL", "tool.name": "calculator"}, name="calc")
    assert (result.span_type, result.tool_name) == ("tool", "calculator")
    result = span({"openinference.span.kind": "TOOL"}, name="calculator")
    assert result.tool_name == "calculator"


def test_openinference_embedding_span_costs_input_only(price_file):
    result = span(
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
            "llm.token_count.prompt": 500_000,
        }
    )
    assert (result.span_type, result.model, result.output_tokens) == (
        "llm",
        "text-embedding-3-small",
        None,
    )
    assert result.cost_usd == Decimal("0.01000000")


def test_missing_count_derived_from_total():
    result = span({"llm.token_count.prompt": 30, "llm.token_count.total": 100})
    assert (result.input_tokens, result.output_tokens) == (30, 70)
    result = span({"gen_ai.usage.output_tokens": 30, "llm.token_count.total": 100})
    assert (result.input_tokens, result.output_tokens) == (70, 30)
    result = span({"llm.token_count.prompt": 300, "llm.token_count.total": 100})
    assert (result.input_tokens, result.output_tokens) == (300, None)  # inconsistent: not derived


def test_traceloop_kinds():
    assert span({"traceloop.span.kind": "workflow"}).span_type == "chain"
    assert span({"traceloop.span.kind": "task"}).span_type == "chain"
    assert span({"traceloop.span.kind": "agent"}).span_type == "agent"
    result = span({"traceloop.span.kind": "tool", "traceloop.entity.name": "fetch"})
    assert (result.span_type, result.tool_name) == ("tool", "fetch")


def test_declared_span_type_wins():
    result = span({"tracefoundry.span_type": "retriever", "gen_ai.operation.name": "chat"})
    assert result.span_type == "retriever"
    assert span({"tracefoundry.span_type": "bogus"}).span_type == "other"


# --- cost -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("gen_ai.usage.cost", 0.0123, Decimal("0.01230000")),
        ("llm.cost.total", "0.5", Decimal("0.50000000")),
        ("tracefoundry.cost_usd", 2, Decimal("2.00000000")),
        ("gen_ai.usage.cost", "1.123456789", Decimal("1.12345679")),
    ],
)
def test_cost_given_on_the_span_wins(price_file, key, value, expected):
    result = span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 1000,
            key: value,
        }
    )
    assert result.cost_usd == expected


def test_openinference_cost_parts_are_summed():
    result = span({"llm.cost.prompt": 0.25, "llm.cost.completion": "0.5"})
    assert result.cost_usd == Decimal("0.75000000")


def test_bad_given_cost_falls_back_to_the_price_table(price_file):
    result = span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1_000_000,
            "gen_ai.usage.output_tokens": 0,
            "gen_ai.usage.cost": "n/a",
            "llm.cost.total": -3,
        }
    )
    assert result.cost_usd == Decimal("2.50000000")


def test_unknown_model_has_no_cost(price_file):
    result = span(
        {
            "gen_ai.request.model": "my-private-model",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 100,
        }
    )
    assert result.span_type == "llm"
    assert result.cost_usd is None


def test_unknown_tokens_have_no_cost(price_file):
    assert (
        span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}).cost_usd is None
    )


def test_cached_input_tokens_use_the_cached_price(price_file):
    result = span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1_000_000,
            "gen_ai.usage.cache_read.input_tokens": 400_000,
            "gen_ai.usage.output_tokens": 0,
        }
    )
    assert result.cost_usd == Decimal("2.00000000")  # 0.6M * 2.50 + 0.4M * 1.25


@pytest.mark.parametrize(
    ("model", "input_per_million"),
    [
        ("gpt-4o", Decimal("2.5")),
        ("GPT-4o", Decimal("2.5")),
        ("gpt-4o-2024-08-06", Decimal("2.5")),
        ("gpt-4o-2024-05-13", Decimal("5.00")),  # exact entry beats the family prefix
        ("gpt-4o-mini-2024-07-18", Decimal("0.15")),  # longest prefix
        ("gpt-4o-2024-05-13-x", Decimal("2.5")),  # an exact-only entry is no prefix
        ("openai/gpt-4o", Decimal("2.5")),
        ("openai:gpt-4o-mini", Decimal("0.15")),
        ("azure/gpt-4o-2024-11-20", Decimal("2.5")),
        ("claude-3-5-sonnet-20241022", Decimal("3")),
        ("claude-3-5-sonnet@20240620", Decimal("3")),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", Decimal("3")),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", Decimal("3")),
        ("anthropic/claude-3.5-sonnet", Decimal("3")),
        ("meta-llama/Llama-3.3-70B-Instruct-Turbo", Decimal("0.88")),
        ("meta.llama3-3-70b-instruct-v1:0", Decimal("0.72")),
    ],
)
def test_price_matching(price_file, model, input_per_million):
    price = price_for(model)
    assert price is not None
    assert price.input_per_million == input_per_million


@pytest.mark.parametrize(
    "model",
    [
        "",
        "gpt-4",  # a prefix of gpt-4o, not the other way round
        "gpt-4o2",  # no separator after the family name
        "ft:gpt-4o-mini-2024-07-18:org::abc",  # fine-tunes are priced differently
        "claude-3-5",
        None,
        42,
    ],
)
def test_price_matching_misses(price_file, model):
    assert price_for(model) is None


def test_cost_for(price_file):
    assert cost_for("gpt-4o", 1000, 500) == Decimal("0.00750000")
    assert cost_for("gpt-4o", 1, 0) == Decimal("0.00000250")
    assert cost_for("gpt-4o-mini", 1, 1) == Decimal("0.00000075")
    assert cost_for("gpt-4o", 3, None) == Decimal("0.00000750")
    assert cost_for("gpt-4o", None, None) is None
    assert cost_for("nope", 10, 10) is None
    assert cost_for("gpt-4o", -5, "7") is None  # type: ignore[arg-type]
    assert cost_for("gpt-4o", 10, 0, cached_input_tokens=50) == Decimal("0.00001250")


def test_price_table_follows_the_setting(tmp_path, settings, price_file):
    assert price_for("gpt-4o").input_per_million == Decimal("2.5")
    other = tmp_path / "other.yaml"
    other.write_text("models:\n  gpt-4o: {input: 1, output: 2}\n", encoding="utf-8")
    settings.TRACEFOUNDRY_MODEL_PRICES = other
    assert price_for("gpt-4o") == Price(Decimal(1), Decimal(2))
    assert cost_for("claude-3-5-sonnet", 10, 10) is None
    settings.TRACEFOUNDRY_MODEL_PRICES = None
    assert price_for("gpt-4o") is None
    assert len(load_prices()) == 0


def test_relative_price_path_is_taken_from_base_dir(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    (tmp_path / "p.yaml").write_text("models:\n  m1: {input: 1, output: 1}\n", encoding="utf-8")
    settings.TRACEFOUNDRY_MODEL_PRICES = "p.yaml"
    assert price_for("m1") is not None


def test_broken_price_table_never_breaks_extraction(tmp_path, settings, caplog):
    path = tmp_path / "broken.yaml"
    path.write_text("models:\n  gpt-4o: {input: -1, output: 2}\n", encoding="utf-8")
    settings.TRACEFOUNDRY_MODEL_PRICES = path
    with pytest.raises(ImproperlyConfigured, match="non-negative"):
        load_prices()
    with caplog.at_level(logging.ERROR, logger="traces.cost"):
        result = span({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5})
    assert result.span_type == "llm" and result.cost_usd is None
    assert "costs will not be computed" in caplog.text
    [error] = model_prices_configured(None)
    assert error.id == "traces.E101"


def test_missing_price_file_fails_the_system_check(tmp_path, settings):
    settings.TRACEFOUNDRY_MODEL_PRICES = tmp_path / "absent.yaml"
    assert [e.id for e in model_prices_configured(None)] == ["traces.E101"]
    assert price_for("gpt-4o") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just a list", "mapping"),
        ("models: [gpt-4o]", "mapping of model name"),
        ("version: 2\nmodels: {}", "version"),
        ("prices: {}", "unknown top-level"),
        ("models:\n  m: {input: 1}", "`output` is missing"),
        ("models:\n  m: {input: 1, output: abc}", "not a number"),
        ("models:\n  m: {input: .nan, output: 1}", "non-negative"),
        ("models:\n  m: {input: true, output: 1}", "not a number"),
        ("models:\n  m: {input: 1, output: 1, per: token}", "unknown keys"),
        ("models:\n  m: {input: 1, output: 1, match: fuzzy}", "match"),
        ("models:\n  m: {input: 1, output: 1, aliases: [1]}", "aliases"),
        ("models:\n  m: {input: 1, output: 1}\n  n: {input: 1, output: 1, aliases: [M]}", "once"),
        ("models: {m: [1, 2", "invalid YAML"),
    ],
)
def test_malformed_price_tables_are_refused(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ImproperlyConfigured, match=message):
        load_prices(path)


def test_empty_price_file_is_an_empty_table(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert len(load_prices(path)) == 0


# --- the shipped price table ------------------------------------------------------------------

SHIPPED = Path(django_settings.BASE_DIR) / "deploy" / "model-prices.yaml"


def test_shipped_price_table_is_valid_and_configured_by_default(settings):
    del settings.TRACEFOUNDRY_MODEL_PRICES
    assert cost.configured_path() == SHIPPED
    assert model_prices_configured(None) == []
    assert len(load_prices()) > 50
    assert yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))["version"] == 1


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-nano", "gpt-4.1-nano"),
        ("o1-2024-12-17", "o1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-3-5-sonnet"),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("models/gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("gemini-1.5-flash-8b", "gemini-1.5-flash-8b"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("mistral-large-latest", "mistral-large"),
        ("mistral-small-2503", "mistral-small"),
        ("openai/gpt-4o", "gpt-4o"),
        ("llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
        ("meta.llama3-1-8b-instruct-v1:0", "llama3-1-8b-instruct"),
    ],
)
def test_shipped_price_table_covers_common_models(settings, model, family):
    del settings.TRACEFOUNDRY_MODEL_PRICES
    assert price_for(model) is not None
    assert price_for(model) == price_for(family)


def test_shipped_price_table_spot_prices(settings):
    del settings.TRACEFOUNDRY_MODEL_PRICES
    assert price_for("gpt-4o") == Price(Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))
    assert price_for("claude-3-5-sonnet").output_per_million == Decimal(15)
    # the separator rule keeps gpt-4.1 and gpt-4o out of gpt-4's price
    assert price_for("gpt-4.1") != price_for("gpt-4") != price_for("gpt-4o")


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        {"retry.count": 1},
        {"retry.attempt": "2"},
        {"http.request.resend_count": 3},
        {"gen_ai.request.retry": True},
        {"tracefoundry.retry": "true"},
        {"tracefoundry.retry": 1},
    ],
)
def test_retry_from_attributes(attributes):
    assert span(attributes).is_retry
    assert span({**attributes, "gen_ai.operation.name": "chat"}).is_retry


@pytest.mark.parametrize(
    "attributes",
    [
        {"retry.count": 0},
        {"retry.attempt": "0"},
        {"http.request.resend_count": -1},
        {"gen_ai.request.retry": False},
        {"tracefoundry.retry": "false"},
        {"tracefoundry.retry": [True]},
    ],
)
def test_no_retry_from_attributes(attributes):
    assert not span(attributes).is_retry


@pytest.mark.parametrize("event_name", ["retry", "Retry", "gen_ai.retry", "http.retry", "retrying"])
def test_retry_from_events(event_name):
    assert span(events=[{"name": event_name, "time_unix_nano": 1, "attributes": {}}]).is_retry


def test_other_events_are_not_retries():
    events = [{"name": "gen_ai.content.prompt", "attributes": {}}, {"name": "retryable_check"}]
    result = span(events=events)
    assert not result.is_retry and not result.is_timeout


# --- timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type",
    [
        "TimeoutError",
        "httpx.ReadTimeout",
        "openai.APITimeoutError",
        "asyncio.TimeoutError",
        "requests.exceptions.ConnectTimeout",
        "google.api_core.exceptions.DeadlineExceeded",
    ],
)
def test_timeout_from_exception_type(exc_type):
    result = span(events=[exception_event(exc_type)], status_code="error")
    assert result.is_timeout and not result.is_retry


@pytest.mark.parametrize(
    "message", ["Request timed out.", "The read operation timed out", "deadline exceeded"]
)
def test_timeout_from_exception_message(message):
    assert span(events=[exception_event("RuntimeError", message)]).is_timeout


def test_other_exceptions_are_not_timeouts():
    result = span(events=[exception_event("ValueError", "lifetime output was invalid")])
    assert not result.is_timeout


@pytest.mark.parametrize(
    "attributes",
    [
        {"error.type": "timeout"},
        {"error.type": "httpx.ReadTimeout"},
        {"exception.type": "TimeoutError"},
        {"tracefoundry.timeout": True},
        {"tracefoundry.timeout": "yes"},
        {"http.response.status_code": 504},
        {"http.status_code": "408"},
        {"rpc.grpc.status_code": 4},
    ],
)
def test_timeout_from_attributes(attributes):
    assert span(attributes).is_timeout


@pytest.mark.parametrize(
    "attributes",
    [
        {"error.type": "500"},
        {"tracefoundry.timeout": False},
        {"http.response.status_code": 500},
        {"rpc.grpc.status_code": 0},
    ],
)
def test_no_timeout_from_attributes(attributes):
    assert not span(attributes).is_timeout


def test_timeout_from_status_message_and_events():
    assert span(status_code="error", status_message="upstream timed out after 30s").is_timeout
    assert span(status_code="error", status_message="Timeout waiting for lock").is_timeout
    assert not span(status_code="error", status_message="connection refused").is_timeout
    assert span(events=[{"name": "tool.timeout", "attributes": {}}]).is_timeout
    assert span(events=[{"name": "timeout"}]).is_timeout


def test_retry_and_timeout_on_an_llm_span(price_file):
    result = span(
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
        events=[
            {"name": "retry", "attributes": {"retry.attempt": 1}},
            exception_event("openai.APITimeoutError", "Request timed out."),
        ],
        status_code="error",
    )
    assert (result.span_type, result.is_retry, result.is_timeout) == ("llm", True, True)


# --- junk input -------------------------------------------------------------------------------

JUNK_VALUES = [
    None,
    "",
    "12",
    " 7 ",
    "-5",
    "1e3",
    "abc",
    "9" * 500,
    -1,
    0,
    2**70,
    -(2**70),
    1.5,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    [1, 2],
    ["gpt-4o"],
    {"nested": {"x": 1}},
    b"bytes",
    Decimal("NaN"),
    Decimal("-1"),
    object(),
]

WATCHED_KEYS = [  # every one is in genai.ATTRIBUTE_KEYS (checked below)
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cost",
    "gen_ai.tool.name",
    "gen_ai.agent.name",
    "openinference.span.kind",
    "llm.model_name",
    "llm.token_count.prompt",
    "llm.token_count.total",
    "llm.cost.total",
    "llm.cost.prompt",
    "tool.name",
    "tracefoundry.cost_usd",
    "tracefoundry.span_type",
    "retry.count",
    "http.request.resend_count",
    "gen_ai.request.retry",
    "error.type",
    "tracefoundry.timeout",
    "http.response.status_code",
    "rpc.grpc.status_code",
]


@pytest.fixture
def no_extraction_errors(caplog):
    """`extract` swallows its own bugs; junk must be handled without reaching that net."""
    with caplog.at_level(logging.ERROR, logger="traces.genai"):
        yield
    assert "GenAI extraction failed" not in caplog.text


@pytest.mark.usefixtures("no_extraction_errors")
@pytest.mark.parametrize("value", JUNK_VALUES, ids=lambda v: type(v).__name__)
def test_junk_attribute_values_never_raise(price_file, value):
    base = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10}
    for key in WATCHED_KEYS:
        result = span({**base, key: value})
        assert result.span_type in SPAN_TYPES
        assert result.input_tokens is None or 0 <= result.input_tokens < 2**31
        assert result.cost_usd is None or (
            result.cost_usd.is_finite() and 0 <= result.cost_usd < 10**8
        )
    result = span(
        dict.fromkeys(WATCHED_KEYS, value), name=value, events=[value], status_message=value
    )
    assert result.span_type in SPAN_TYPES


def test_attribute_keys_name_what_extraction_reads():
    assert set(WATCHED_KEYS) <= ATTRIBUTE_KEYS
    assert {"llm.token_count.completion", "gen_ai.usage.completion_tokens"} <= ATTRIBUTE_KEYS


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (" 7 ", 7), (12.0, 12), ("1e3", 1000), ("-5", None), (-1, None), (1.5, None)],
)
def test_token_counts_are_coerced(value, expected):
    assert span({"gen_ai.usage.input_tokens": value}).input_tokens == expected


def test_huge_counts_and_costs_are_ignored(price_file):
    result = span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10**20,
            "gen_ai.usage.output_tokens": 2**31 - 1,
            "gen_ai.usage.cost": 10**12,
        }
    )
    assert result.input_tokens is None
    assert result.output_tokens == 2**31 - 1
    assert result.cost_usd == Decimal("21474.83647000")  # computed; the given cost was absurd


@pytest.mark.usefixtures("no_extraction_errors")
@pytest.mark.parametrize(
    "call",
    [
        {"attributes": None, "events": None},
        {"attributes": "not a dict", "events": "not a list"},
        {"attributes": [("gen_ai.system", "openai")], "events": [None, 1, "x", {"name": 5}]},
        {"attributes": {1: "int key", None: 2}, "events": [{"name": "exception", "attributes": 3}]},
        {"attributes": {}, "events": [{}]},
    ],
)
def test_junk_shapes_never_raise(call):
    result = extract(
        name=None,  # type: ignore[arg-type]
        kind=None,  # type: ignore[arg-type]
        status_code=None,  # type: ignore[arg-type]
        status_message=None,  # type: ignore[arg-type]
        **call,
    )
    assert result.span_type in SPAN_TYPES


def test_long_texts_are_cut():
    result = span({"gen_ai.request.model": "m" * 10_000, "gen_ai.tool.name": "t" * 10_000})
    assert len(result.model) == 255
    assert len(result.tool_name) == 255
    result = span({"gen_ai.operation.name": "execute_tool"}, name="execute_tool " + "x" * 10_000)
    assert len(result.tool_name) == 255


def test_results_are_immutable():
    result = span({"gen_ai.operation.name": "chat"})
    with pytest.raises(AttributeError):
        result.model = "x"  # type: ignore[misc]
