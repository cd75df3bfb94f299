"""What an LLM call cost, from the operator's price table (``deploy/model-prices.yaml``).

The table's format and its name-matching rules are documented in the file's header. In short: USD
per million input / output (and optionally cache-read input) tokens per model; a model name finds
its entry by exact name or alias, then with a provider prefix dropped (``openai/…``,
``openai:…``, Bedrock's ``[us.]anthropic.…``), then by the longest entry it starts with followed by
``-``, ``@`` or ``:`` (``gpt-4o-2024-08-06`` → ``gpt-4o``).

The table is ``settings.TRACEFOUNDRY_MODEL_PRICES`` (default ``BASE_DIR/deploy/model-prices.yaml``;
a relative path is taken from ``BASE_DIR``; ``None`` or ``""`` means no table, so only costs given
on spans are known). It is read once per process, and again whenever Django's ``setting_changed``
fires for it (``override_settings``, pytest-django's ``settings`` fixture). A table that cannot be
read is an error for ``manage.py check`` (``traces.E101``); at ingest it only logs and leaves costs
empty — a price table must never cost a span.

``cost_for`` is on the ingest path of every LLM span, so model → price lookups are cached.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

import yaml
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

logger = logging.getLogger(__name__)

SETTING = "TRACEFOUNDRY_MODEL_PRICES"
# Costs are stored with 8 decimal places and stay below 10^8 USD, so they fit a
# DecimalField(max_digits=16, decimal_places=8); token counts fit a signed 32-bit integer.
COST_PLACES = Decimal("0.00000001")
MAX_COST_USD = Decimal(100_000_000)
MAX_TOKENS = 2**31 - 1

_ENTRY_KEYS = frozenset({"input", "output", "cached_input", "aliases", "match"})
_SEPARATORS = ("-", "@", ":")
# `provider:model`, as pydantic-ai and some gateways write it. Only known providers, because
# OpenAI fine-tune ids (`ft:gpt-4o-mini-…:org::id`) are priced differently from their base model.
_PROVIDER_COLON = re.compile(
    r"(?:openai|azure|anthropic|google(?:-gla|-vertex)?|gemini|vertex(?:_?ai)?|mistral|groq"
    r"|bedrock|together|fireworks|openrouter|cohere|deepseek|ollama):"
)
# AWS Bedrock model ids: `<vendor>.<model>`, optionally behind a cross-region inference profile.
_BEDROCK_PREFIX = re.compile(
    r"(?:(?:us|eu|apac|au|ca|jp|us-gov|global)\.)?"
    r"(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|qwen|writer)\."
)

try:  # libyaml's loader is several times faster; the pure-Python one reads the same documents
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Without a cached-input price, cached tokens cost as input."""

    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None

    def cost(
        self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> Decimal | None:
        """The cost rounded to 8 places, or None when it is not a plausible amount."""
        try:
            total = input_tokens * self.input_per_million + output_tokens * self.output_per_million
            if cached_input_tokens > 0 and self.cached_input_per_million is not None:
                cached = min(cached_input_tokens, input_tokens)
                total += cached * (self.cached_input_per_million - self.input_per_million)
            total = total.scaleb(-6)  # per million, exactly
            if not 0 <= total < MAX_COST_USD:
                return None
            return total.quantize(COST_PLACES, rounding=ROUND_HALF_UP)
        except (InvalidOperation, ArithmeticError):
            return None


@dataclass(frozen=True)
class PriceTable:
    """A parsed price table: exact names and aliases, and prefix entries longest first."""

    exact: Mapping[str, Price] = field(default_factory=dict)
    prefixes: tuple[tuple[str, Price], ...] = ()
    source: str = ""
    error: str = ""  # set when the configured table could not be read and this one stands in

    def __len__(self) -> int:
        return len(self.exact)

    def lookup(self, model: str) -> Price | None:
        names = _candidate_names(model.strip().lower())
        for name in names:
            price = self.exact.get(name)
            if price is not None:
                return price
        for name in names:
            for prefix, price in self.prefixes:
                if name.startswith(prefix) and name[len(prefix) : len(prefix) + 1] in _SEPARATORS:
                    return price
        return None


def _candidate_names(name: str) -> list[str]:
    """The name, then the same with a route, `provider:` and Bedrock vendor prefix dropped."""
    names = [name]
    if "/" in name:
        name = name.rsplit("/", 1)[1]
        names.append(name)
    match = _PROVIDER_COLON.match(name)
    if match:
        name = name[match.end() :]
        names.append(name)
    match = _BEDROCK_PREFIX.match(name)
    if match:
        name = name[match.end() :]
        names.append(name)
    return [n for n in names if n]


# --- reading the table ------------------------------------------------------------------------


def parse_prices(document: object, *, source: str = "") -> PriceTable:
    """Validate a loaded YAML document into a PriceTable (ImproperlyConfigured says what is bad)."""

    def fail(message: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"model price table {source or '(inline)'}: {message}")

    if document is None:
        return PriceTable(source=source)
    if not isinstance(document, Mapping):
        raise fail("expected a mapping with a `models:` key")
    unknown = set(document) - {"version", "models"}
    if unknown:
        raise fail(f"unknown top-level keys {sorted(map(str, unknown))}")
    if document.get("version", 1) != 1:
        raise fail(f"unsupported version {document.get('version')!r} (expected 1)")
    models = document.get("models") or {}
    if not isinstance(models, Mapping):
        raise fail("`models` must be a mapping of model name -> prices")

    exact: dict[str, Price] = {}
    prefixes: list[tuple[str, Price]] = []
    for raw_name, entry in models.items():
        name = str(raw_name).strip().lower()
        if not name:
            raise fail("a model name is empty")
        price, aliases, prefix_match = _parse_entry(entry, fail=lambda m, n=name: fail(f"{n}: {m}"))
        for spelling in (name, *aliases):
            if spelling in exact:
                raise fail(f"{spelling!r} appears more than once")
            exact[spelling] = price
            if prefix_match:
                prefixes.append((spelling, price))
    prefixes.sort(key=lambda item: len(item[0]), reverse=True)
    return PriceTable(exact=exact, prefixes=tuple(prefixes), source=source)


def _parse_entry(entry: object, *, fail) -> tuple[Price, list[str], bool]:
    if not isinstance(entry, Mapping):
        raise fail("expected a mapping with `input` and `output`")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(map(str, unknown))}")
    for required in ("input", "output"):
        if required not in entry:
            raise fail(f"`{required}` is missing")
    cached = entry.get("cached_input")
    price = Price(
        input_per_million=_price_amount(entry["input"], fail=fail),
        output_per_million=_price_amount(entry["output"], fail=fail),
        cached_input_per_million=None if cached is None else _price_amount(cached, fail=fail),
    )
    aliases = entry.get("aliases") or []
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise fail("`aliases` must be a list of names")
    match = entry.get("match", "prefix")
    if match not in ("prefix", "exact"):
        raise fail(f"`match` must be prefix or exact, not {match!r}")
    return price, [a.strip().lower() for a in aliases], match == "prefix"


def _price_amount(value: object, *, fail) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise fail(f"price {value!r} is not a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise fail(f"price {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise fail(f"price {value!r} must be a non-negative number")
    return amount


def read_prices(path: Path | str) -> PriceTable:
    """Read and validate one price file (no caching)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"model price table {path}: cannot be read ({exc})") from None
    try:
        document = yaml.load(text, Loader=_Loader)  # a safe loader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ImproperlyConfigured(f"model price table {path}: invalid YAML ({exc})") from None
    return parse_prices(document, source=str(path))


def configured_path() -> Path | None:
    """The configured table's path, or None when no table is configured."""
    base_dir = Path(getattr(settings, "BASE_DIR", Path(__file__).resolve().parent.parent))
    value = getattr(settings, SETTING, base_dir / "deploy" / "model-prices.yaml")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


_configured: PriceTable | None = None


def load_prices(path: Path | str | None = None) -> PriceTable:
    """The price table at `path`, or (None) the configured one, read once and cached.

    Raises ImproperlyConfigured when the file is missing or malformed. Lookups (`price_for`,
    `cost_for`) never raise: after a failed read they use an empty table, logged once, until the
    setting changes or the process restarts.
    """
    global _configured
    if path is not None:
        return read_prices(path)
    table = _configured
    if table is None:
        configured = configured_path()
        table = PriceTable() if configured is None else read_prices(configured)
        _configured = table
    return table


def _active_table() -> PriceTable:
    global _configured
    try:
        return load_prices()
    except ImproperlyConfigured as exc:
        logger.error("costs will not be computed from prices: %s", exc)
        _configured = PriceTable(error=str(exc))
        return _configured


def forget_prices() -> None:
    """Drop the cached table and lookups; the next lookup reads the configured file again."""
    global _configured
    _configured = None
    _price_lookup.cache_clear()


def _forget_on_change(*, setting: str, **kwargs: object) -> None:
    if setting in (SETTING, "BASE_DIR"):
        forget_prices()


setting_changed.connect(_forget_on_change)


# --- lookups ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _price_lookup(model: str) -> Price | None:
    return _active_table().lookup(model)


def price_for(model: str) -> Price | None:
    """The price entry for a model name (exact, provider-prefixed or dated variant), or None."""
    if not isinstance(model, str) or not model or len(model) > 512:
        return None
    return _price_lookup(model)


def cost_for(
    model: str,
    input_tokens: int | None,
    output_tokens: int | None,
    *,
    cached_input_tokens: int | None = None,
) -> Decimal | None:
    """USD for a call, rounded to 8 places; None if the model has no price or no tokens are known.

    A missing count among the two is taken as 0 (embedding calls report input tokens only).
    `cached_input_tokens` are the cache-read tokens counted inside `input_tokens`.
    """
    inputs = _token_count(input_tokens)
    outputs = _token_count(output_tokens)
    if inputs is None and outputs is None:
        return None
    price = price_for(model)
    if price is None:
        return None
    return price.cost(inputs or 0, outputs or 0, _token_count(cached_input_tokens) or 0)


def _token_count(value: object) -> int | None:
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return value
    return None


@checks.register()
def model_prices_configured(app_configs, **kwargs):
    """A broken price table should stop start-up, not silently leave every cost empty."""
    try:
        path = configured_path()
        if path is not None:
            read_prices(path)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint=f"Fix the file or {SETTING}.", id="traces.E101")]
    return []
