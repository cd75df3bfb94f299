"""The one redaction engine: removes secrets (and, under ``strict``, personal data) from text and
JSON-like values before anything is persisted — DB rows, payload blobs, logs, exports.

Policies (``settings.TRACEFOUNDRY_REDACTION_POLICY``, default ``standard``):

- ``standard``: credentials and tokens. Labels: ``aws_access_key`` (``AKIA``/``ASIA``/``ABIA``/
  ``ACCA``), ``aws_secret_key`` (only in ``aws_secret_access_key=…``-like context),
  ``google_api_key`` (GCP and Google AI ``AIza…``), ``azure_storage_key`` (``AccountKey=``/
  ``SharedAccessKey=`` of connection strings; the name stays), ``azure_sas`` (``sig=`` of SAS
  URLs), ``stripe_key`` (``sk_``/``rk_`` live/test/prod, ``whsec_``), ``square_token``
  (``sq0atp-``/``sq0csp-``/``sq0idp-``, ``EAAA…``), ``twilio_key`` (``SK``/``AC`` + 32 hex),
  ``sendgrid_key`` (``SG.x.y``), ``mailgun_key`` (``key-`` + 32 hex), ``slack_token``,
  ``slack_webhook`` (host and path prefix stay), ``github_token``, ``gitlab_token``,
  ``npm_token``, ``pypi_token``, ``dockerhub_token``, ``openai_key``, ``anthropic_key``,
  ``huggingface_token``, ``jwt``, ``bearer_token`` and ``basic_auth`` (the ``Bearer``/``Basic``
  scheme word stays), ``private_key`` (the whole PEM block wherever it starts — also after a
  sensitive key, ``PRIVATE_KEY=-----BEGIN…``, and \\n-escaped any number of times, as in a GCP
  service-account JSON; an unterminated block as far as its base64 body goes), ``url_password``
  (``scheme://user:[REDACTED:url_password]@host``). Tokens with a distinctive prefix are found
  glued to the text around them (``xAKIA…abc``, ``id:ghp_…;``); ``sk-`` (OpenAI) only after a
  non-word character, since ``task-``/``risk-`` end in it.
- ``strict``: ``standard`` plus ``email``, ``phone``, ``ip_address`` (IPv4 and IPv6; not ``::1``)
  and ``card_number`` (13–19 digits starting 2–6, Luhn-checked).
- ``off``: everything is returned unchanged (the very same object).

Sensitive keys. A key is sensitive when it contains ``passw``, ``pwd``, ``passphrase``, ``secret``,
``credential``, ``cookie``, ``authorization``, or ``api``/``access``/``private``/``signing``/
``encryption``/``master``/``session`` + ``key`` (joined by ``-``, ``_``, ``.``, nothing, or in
dict keys a space), or when it *ends* in ``token`` or ``auth``; ASCII case-insensitively. So
``OPENAI_API_KEY``, ``x-api-key``, ``accessToken`` and ``http.request.header.authorization`` are
sensitive; ``token_count``, ``input_tokens``, ``gen_ai.usage.output_tokens``, ``max_tokens`` and
``cache_key`` are not. Values under a sensitive key are replaced by a label naming the key's class:
``password``, ``aws_secret_key``, ``private_key``, ``cookie``, ``token``, ``api_key``,
``access_key``, ``authorization``, ``secret`` or ``credential`` — except that a value which is
itself a recognisable token is labelled by its kind (``OPENAI_API_KEY=[REDACTED:openai_key]``) and
an ``Authorization``-style value keeps its scheme (``Bearer [REDACTED:bearer_token]``).

In dicts (``Redactor.value``), under a sensitive key: ``None``, booleans and empty strings or
containers are kept; lists and tuples are redacted element by element (OpenTelemetry array
attributes keep their type); anything else becomes the label string. A ``{"key"|"name":
<sensitive>, "value": …}`` pair (OTLP JSON attributes, Kubernetes env entries) has its ``value``
redacted the same way. Non-str keys are checked as ``str(key)``. A str key is itself redacted
like any text (a secret used as a key becomes its label); when two keys of one dict redact
alike, both values stay: the later key gets a ``#2`` (``#3``…) suffix.

In free text, ``key=value``, ``key: value``, ``"key": "value"`` (also ``'…'`` and ``\\"…\\"``) and
``Authorization:``/``Cookie:`` header lines (to the end of the line) are redacted. Code rather than
data is left alone: ``password: str``, ``password=password``, ``api_key=OPENAI_API_KEY``,
``token=os.environ[…]``, ``get_password()``, ``${VAR}``, ``None``, ``****``. After a key that only
*ends* in token/auth, an unquoted value must contain a digit or be 16+ characters long
(``Token: the smallest unit of text`` stays).

Extra patterns: ``settings.TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS`` maps a label to a regex string;
each is one extra pass, applied under every policy but ``off`` before the built-in detectors. A
pattern that does not compile, or matches the empty string, raises ``ImproperlyConfigured``. Both
settings are read once, and again whenever Django's ``setting_changed`` fires
(``override_settings``, pytest-django's ``settings`` fixture).

Values nested deeper than ``MAX_DEPTH`` become ``[REDACTED:max_depth]`` (this also ends reference
cycles). Redaction is idempotent: ``[REDACTED:…]`` labels are never redacted again.

Speed: every detector names the literals its match starts with or contains (``sk-``, ``://``,
``eyJ``, ``token``…; under ``strict`` also ``@``, ``+1``, ``:x:``, a run of digits). One regex finds
those anchors — each keyed on its rarest character, so the scan stays on ``re``'s fast
first-character path — and a string without any costs that search only. Detectors then run at the
anchored offsets alone, never across the whole text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

POLICIES = ("standard", "strict", "off")
DEFAULT_POLICY = "standard"
REDACTED = "[REDACTED:{name}]"
MAX_DEPTH = 64

_LABEL_PREFIX = "[REDACTED:"
_PEM_START = "-----BEGIN"
_PLAIN = frozenset({int, float, bool, type(None)})  # leaves returned as they are
_KEY_CACHE_MAX = 4096
_INLINE_SCAN_MAX = 256  # `_walk_dict` looks for anchors itself in strings up to this long
# Short strings found clean are remembered (per redactor), up to this many: attribute values
# repeat — service, model and tool names, ids shared by a trace's spans — and a set lookup costs
# a fraction of an anchor search.
_CLEAN_MAX = 32_768


def _label(name: str) -> str:
    return REDACTED.format(name=name)


# --- sensitive key names -------------------------------------------------------------------------


_KEY_ANYWHERE = (
    r"passw|pwd|passphrase|secret|credential|cookie|authorization"
    r"|(?:api|access|private|signing|encryption|master|session)[-_. ]?key"
)
_KEY_AT_END = r"token|auth"  # only at the end: `token_count`, `max_tokens`, `author` stay
_SENSITIVE_KEY = re.compile(rf"(?ai)(?:{_KEY_ANYWHERE})|(?:{_KEY_AT_END})\Z")
_STRONG_KEY = re.compile(_KEY_ANYWHERE, re.ASCII | re.IGNORECASE)

_KEY_CLASSES = tuple(
    (name, re.compile(rx, re.ASCII | re.IGNORECASE))
    for name, rx in (
        ("aws_secret_key", r"aws[-_. ]?secret|secret[-_. ]?access[-_. ]?key"),
        ("password", r"passw|pwd|passphrase"),
        ("private_key", r"private[-_. ]?key"),
        ("cookie", r"cookie"),
        ("token", r"token\Z"),
        ("api_key", r"api[-_. ]?key"),
        ("access_key", r"access[-_. ]?key"),
        ("authorization", r"authorization|auth\Z"),
        ("secret", r"secret|(?:signing|encryption|master|session)[-_. ]?key"),
        ("credential", r"credential"),
    )
)


@functools.lru_cache(maxsize=_KEY_CACHE_MAX)
def _key_class(key: str) -> str | None:
    """The label class of a sensitive key, or None when the key is not sensitive."""
    if not _SENSITIVE_KEY.search(key):
        return None
    for name, rx in _KEY_CLASSES:
        if rx.search(key):
            return name
    return "secret"


# --- tokens recognisable on their own ------------------------------------------------------------

_TOKEN_PATTERNS = (
    # Distinctive prefixes need no left boundary: a token glued to the text before it
    # (`xAKIA…`, `id:ghp_…`) is still found. Fixed-length bodies take exactly their length, so
    # letters glued after (`AKIA…abc`) stay and the token goes.
    ("aws_access_key", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_-]{20,}"),
    # At least one digit, so prose such as `sk-learn-compatible-estimators` survives; `sk-` is too
    # short a prefix to be found glued to a word (`task-…`, `risk-…`).
    ("openai_key", r"(?<![\w-])sk-(?=[A-Za-z0-9_-]{20})[A-Za-z_-]*+[0-9][A-Za-z0-9_-]*"),
    ("stripe_key", r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9+/=]{24,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_-]{35}"),
    ("github_token", r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"),
    ("gitlab_token", r"gl(?:pat|ptt|dt|rt|ft|soat|cbt|imt|oas)-[A-Za-z0-9_-]{20,}"),
    ("slack_token", r"xox[abcdeprs]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,}"),
    ("square_token", r"sq0(?:atp|csp|idp)-[A-Za-z0-9_-]{22,}|EAAA[A-Za-z0-9_-]{60,}"),
    ("twilio_key", r"(?:SK|AC)[0-9a-f]{32}"),
    ("sendgrid_key", r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"),
    ("mailgun_key", r"key-[0-9a-f]{32}"),
    ("npm_token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi_token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{40,}"),
    ("dockerhub_token", r"dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,}"),
    ("huggingface_token", r"hf_[A-Za-z0-9]{30,}"),
    ("jwt", r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
)
_TOKEN_FULLMATCH = tuple((name, re.compile(rx)) for name, rx in _TOKEN_PATTERNS)
_TOKEN_ANCHORS = {
    "aws_access_key": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "anthropic_key": ("sk-",),
    "openai_key": ("sk-",),
    "stripe_key": (
        *(f"{kind}_{mode}_" for kind in ("sk", "rk") for mode in ("live", "test", "prod")),
        "whsec_",
    ),
    "google_api_key": ("AIza",),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab_token": tuple(
        f"gl{kind}-" for kind in ("pat", "ptt", "dt", "rt", "ft", "soat", "cbt", "imt", "oas")
    ),
    "slack_token": (*(f"xox{kind}-" for kind in "abcdeprs"), "xapp-"),
    "square_token": ("sq0atp-", "sq0csp-", "sq0idp-", "EAAA"),
    "twilio_key": ("SK", "AC"),
    "sendgrid_key": ("SG.",),
    "mailgun_key": ("key-",),
    "npm_token": ("npm_",),
    "pypi_token": ("pypi-AgEIcHlwaS5vcmc",),
    "dockerhub_token": ("dckr_pat_", "dckr_oat_"),
    "huggingface_token": ("hf_",),
    "jwt": ("eyJ",),
}
# What must follow a short anchor for its token to be possible (checked before the regex).
_TOKEN_FOLLOW = {
    "twilio_key": re.compile(r"[0-9a-f]{32}"),
    "huggingface_token": re.compile(r"[A-Za-z0-9]{30}"),
    "mailgun_key": re.compile(r"[0-9a-f]{32}"),
}

_TOKEN_PREFIXES = tuple(sorted({a for anchors in _TOKEN_ANCHORS.values() for a in anchors}))
_AUTH_SCHEME = re.compile(r"(?i)(bearer|basic|token|digest|negotiate|ntlm)([ \t]+)(\S.*)", re.S)
_SCHEME_LABELS = {"bearer": "bearer_token", "basic": "basic_auth", "token": "token"}


def _token_kind(value: str) -> str | None:
    value = value.strip()
    if not value.startswith(_TOKEN_PREFIXES):
        return None
    for name, rx in _TOKEN_FULLMATCH:
        if rx.fullmatch(value):
            return name
    return None


def _secret_replacement(key_class: str, value: str) -> str | None:
    """What replaces a secret value found under a key of `key_class`; None to leave it."""
    if not value.strip() or value.startswith(_LABEL_PREFIX):
        return None
    scheme = _AUTH_SCHEME.match(value)
    if scheme:
        if scheme.group(3).startswith(_LABEL_PREFIX):
            return None
        word = scheme.group(1)
        name = _SCHEME_LABELS.get(word.lower(), "authorization")
        return word + scheme.group(2) + _label(name)
    return _label(_token_kind(value) or key_class)


# --- code, not data: values after a sensitive key that are left alone in free text ---------------

_PLACEHOLDERS = frozenset(
    (
        *("str", "bytes", "int", "float", "bool", "any", "object", "dict", "list", "string"),
        *("none", "null", "nil", "true", "false", "undefined", "optional", "required"),
        *("secretstr", "secretbytes"),
    )
)
_CODE_ROOTS = frozenset(("self", "cls", "settings", "os", "config", "cfg", "env", "request", "ctx"))
_DOTTED_NAME = re.compile(r"[A-Za-z_]+(?:[_.][A-Za-z_]+)+")
_MASK_CHARS = frozenset("*xX•.#-_")


def _looks_like_code(key: str, value: str, after: str) -> bool:
    low = value.lower()
    if low in _PLACEHOLDERS or value[0] in "$%<*" or after in ("(", "["):
        return True
    if low == key.lower() or set(value) <= _MASK_CHARS:
        return True
    if "." in value and value.split(".", 1)[0] in _CODE_ROOTS:
        return True
    # `api_key=OPENAI_API_KEY`, `password=db_password`: a variable, not the secret itself.
    return bool(_DOTTED_NAME.fullmatch(value) and _SENSITIVE_KEY.search(value))


# --- renderers: a detector's match -> its replacement, or None to reject the match ---------------

Render = Callable[[re.Match[str]], str | None]


def _render_kv(m: re.Match[str]) -> str | None:
    key = m.group(1)
    key_class = _key_class(key)
    if key_class is None:
        return None
    idx = next(i for i in (3, 4, 5, 6) if m.group(i) is not None)
    value = m.group(idx)
    if not value or _PEM_START in value:  # the private_key detector takes the whole block
        return None
    if idx == 6:  # unquoted
        if _looks_like_code(key, value, m.string[m.end() : m.end() + 1]):
            return None
        weak_key = not _STRONG_KEY.search(key)  # it only *ends* in token/auth
        if weak_key and len(value) < 16 and not any(c.isdigit() for c in value):
            return None
    repl = _secret_replacement(key_class, value)
    if repl is None:
        return None
    return m.string[m.start() : m.start(idx)] + repl + m.string[m.end(idx) : m.end()]


def _render_header(m: re.Match[str]) -> str | None:
    value = m.group(3).rstrip()
    if _PEM_START in value:
        return None
    repl = _secret_replacement(_key_class(m.group(1)) or "authorization", value)
    if repl is None:
        return None
    return m.group(1) + m.group(2) + repl + m.group(3)[len(value) :]


def _render_url_password(m: re.Match[str]) -> str | None:
    password = m.group(3)
    if password.startswith(_LABEL_PREFIX):
        return None
    return f"{m.group(1)}{m.group(2)}:{_label(_token_kind(password) or 'url_password')}@"


def _keep_prefix(name: str) -> Render:
    def render(m: re.Match[str]) -> str:
        return m.group(1) + _label(name)

    return render


def _render_basic(m: re.Match[str]) -> str | None:
    token = m.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if b":" not in decoded or not decoded.isascii():  # `Basic understanding` is not base64 user:pw
        return None
    return m.group(1) + _label("basic_auth")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _render_card(m: re.Match[str]) -> str | None:
    digits = "".join(c for c in m.group(0) if c.isdigit())
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return _label("card_number")
    return None


def _render_intl_phone(m: re.Match[str]) -> str | None:
    count = sum(c.isdigit() for c in m.group(0))
    return _label("phone") if 8 <= count <= 15 else None


def _render_ipv6(m: re.Match[str]) -> str | None:
    address = m.group(0).split("%", 1)[0]
    # Two non-empty groups at least: `::1` is loopback, and `[::2]` is a Python slice.
    if sum(1 for group in address.split(":") if group) < 2:
        return None
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return None
    return _label("ip_address")


# --- where a detector's match can start, given an anchor at `p` ----------------------------------

StartRule = Callable[[str, int], int | None]


def _run_start(chars: str, limit: int) -> StartRule:
    """Start of the run of `chars` that ends at the anchor (None if longer than `limit`)."""
    run = re.compile(f"[{chars}]{{0,{limit + 1}}}").match

    def rule(s: str, p: int) -> int | None:
        length = run(s[max(0, p - limit - 1) : p][::-1]).end()  # re cannot scan backwards
        return p - length if length <= limit else None

    return rule


_KEY_START = _run_start(r"\w.-", 128)  # as long as a `_KV` key
_EMAIL_START = _run_start(r"A-Za-z0-9._%+-", 64)
_IPV6_START = _run_start(r"0-9A-Fa-f:", 45)


@dataclass(frozen=True)
class _Detector:
    name: str
    regex: re.Pattern[str]
    render: Render | None = None  # None: the whole match becomes the label
    anchors: tuple[str, ...] = ()  # literals the match starts with (or, with `start`, contains)
    keywords: tuple[str, ...] = ()  # the same, ASCII case-insensitive, written in lower case
    anchor_chars: str = ""  # strict: the first character of a `_STRICT_ANCHORS` match
    start: StartRule | None = None  # None: the match starts where the anchor does
    # What must follow an anchor literal for a match to be possible at all: checked right
    # after it, before anything else is tried (prose is full of `tokens`, `keys`, `basic`).
    follow: re.Pattern[str] | None = None


# --- detectors, in priority order (the first that accepts a start offset wins) -------------------

# Base64 lines, `Proc-Type:`-style headers, \n-escaped JSON (escaped once or more: JSON inside a
# JSON string); never another `-----` line, so that a stray `-----BEGIN` costs a scan to the next
# dashes, not to the end of the text.
_PEM_BODY = r"(?:[A-Za-z0-9+/=\s:,.<>@()'\"_]|-(?!----)|\\++[nr])"
_PEM = (  # the whole block; unterminated (a truncated payload): as far as base64 lines go
    r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
    rf"(?:{_PEM_BODY}*?-----END[A-Z0-9 ]{{0,40}} PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:[A-Za-z0-9+/=\s]|\\++[nr]){40,}+)"
)
_AZURE_KEY = r"((?:AccountKey|SharedAccessKey)=)[A-Za-z0-9+/]{20,}={0,2}"
_AZURE_SAS = r"(?<=[?&])(sig=)[A-Za-z0-9%+/]{20,}(?:%3[Dd]|=){0,2}"
_SLACK_WEBHOOK = r"(?<=https)(://hooks\.slack\.com/(?:services|workflows|triggers)/)[\w/-]{8,}"
_URL_PASSWORD = r"(://)([^\s:/?#@\"'<>\\]{0,256}):([^\s/?#\"'<>\\]{1,256})@"
_HEADER = (
    r"(?<![\w.-])((?ai:proxy-authorization|authorization|set-cookie|cookie))"
    r"([ \t]*:[ \t]*)(?!\\?[\"'])([^\r\n\\\"']{1,4096})"
)
_KV = (  # the key's sensitivity is checked by `_render_kv`, as for dict keys
    r"(?<![\w.-])([\w.-]{1,128}+)"
    r"(\\{0,8}[\"']?[ \t]{0,4}(?::=|==?|:)[ \t]{0,4})"
    r"(?:\\{0,8}\"([^\"\\\r\n]{0,4096})\\{0,8}\""  # 3: "double", \"escaped\" (once or more)
    r"|'([^'\\\r\n]{0,4096})'"  # 4: 'single'
    r"|((?ai:bearer|basic|token|digest)[ \t]+[^\s,;&\"'<>\\]{1,4096})"  # 5: scheme + credentials
    r"|([^\s,;&\"'<>\\()\[\]{}]{1,4096}))"  # 6: bare
)
# Every sensitive key contains one of these (`authorization` has `auth`, `x-api-key` has `key`).
_KV_ANCHORS = ("passw", "pwd", "passphrase", "secret", "credential", "cookie")
_KV_ANCHORS += ("auth", "key", "token")
# A `key: value`, `key=value` or header needs its separator right after the rest of its key.
_KEY_FOLLOW = re.compile(r"[\w.-]*+\\{0,8}[\"']?[ \t]*+[:=]")
_SCHEME_FOLLOW = re.compile(r"[ \t]")  # `Bearer` and `Basic` take their credentials after blanks
_BEARER = r"(?<![\w-])((?ai:bearer)[ \t]+)(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,4096}"
_BASIC = r"(?<![\w-])((?ai:basic)[ \t]+)([A-Za-z0-9+/]{4,4096}={0,2})(?![\w+/=-])"

_STANDARD = (
    _Detector("private_key", re.compile(_PEM), anchors=("-----BEGIN",)),
    _Detector(
        "slack_webhook",
        re.compile(_SLACK_WEBHOOK),
        _keep_prefix("slack_webhook"),
        anchors=("://",),
    ),
    _Detector(
        "azure_storage_key",
        re.compile(_AZURE_KEY),
        _keep_prefix("azure_storage_key"),
        anchors=("AccountKey=", "SharedAccessKey="),
    ),
    _Detector("azure_sas", re.compile(_AZURE_SAS), _keep_prefix("azure_sas"), anchors=("sig=",)),
    _Detector("url_password", re.compile(_URL_PASSWORD), _render_url_password, anchors=("://",)),
    _Detector(
        "header",
        re.compile(_HEADER),
        _render_header,
        keywords=("auth", "cookie"),
        start=_KEY_START,
        follow=_KEY_FOLLOW,
    ),
    _Detector(
        "key_value",
        re.compile(_KV),
        _render_kv,
        keywords=_KV_ANCHORS,
        start=_KEY_START,
        follow=_KEY_FOLLOW,
    ),
    _Detector(
        "bearer_token",
        re.compile(_BEARER),
        _keep_prefix("bearer_token"),
        keywords=("bearer",),
        follow=_SCHEME_FOLLOW,
    ),
    _Detector(
        "basic_auth", re.compile(_BASIC), _render_basic, keywords=("basic",),
        follow=_SCHEME_FOLLOW,
    ),
    *(
        _Detector(
            name, re.compile(rx), anchors=_TOKEN_ANCHORS[name], follow=_TOKEN_FOLLOW.get(name)
        )
        for name, rx in _TOKEN_PATTERNS
    ),
)

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DIGITS = "0123456789"
_STRICT = (
    _Detector(
        "email",
        re.compile(
            r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}"
            r"(?![\w-])"
        ),
        anchor_chars="@",
        start=_EMAIL_START,
    ),
    _Detector(
        "card_number",
        re.compile(
            r"(?<![\w-])(?:[2-6][0-9]{12,18}(?![0-9])"
            r"|[2-6][0-9]{3}(?P<card_sep>[ -])[0-9]{2,6}(?:(?P=card_sep)[0-9]{2,6}){1,3}+)"
            r"(?![\w]|-[0-9])"
        ),
        _render_card,
        anchor_chars=_DIGITS,
    ),
    _Detector(
        "phone",
        re.compile(r"(?<![\w+])\+[1-9](?:[ .-]?\(?[0-9]++\)?){1,7}+(?![\w])"),
        _render_intl_phone,
        anchor_chars="+",
    ),
    _Detector(
        "phone",
        re.compile(
            r"(?<![\w+.-])(?:1[ .-]?)?(?:\([0-9]{3}\)[ .-]?[0-9]{3}[ .-][0-9]{4}"
            r"|[0-9]{3}(?P<us_sep>[ .-])[0-9]{3}(?P=us_sep)[0-9]{4})(?![\w]|[.-][0-9])"
        ),
        anchor_chars="(" + _DIGITS,
    ),
    _Detector(
        "ip_address",
        re.compile(
            r"(?<![\w:.%])(?:[0-9A-Fa-f]{0,4}:){2,7}"
            r"(?:[0-9A-Fa-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?(?:%[\w.-]{1,32})?"
            r"(?![\w:]|\.[0-9])"
        ),
        _render_ipv6,
        anchor_chars=":",
        start=_IPV6_START,
    ),
    _Detector(
        "ip_address",
        re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.[0-9])"),
        anchor_chars=_DIGITS,
    ),
)

# Strict anchors, each a necessary start of one of the detectors above: `@`; `+` and a digit;
# `(555)`; `::` or three colons with hex digits between (not a `12:00:00` time); and the first
# digit of a run that goes on like a card, a US phone or an IPv4 address (not a date or a count).
# One leading character class keeps the scan on re's fast first-character path.
_STRICT_ANCHORS = re.compile(
    r"[@+(:0-9](?:(?<=[0-9])(?<![0-9][0-9])(?="
    r"[0-9]{12}|[0-9]{3}[ -][0-9]{2,6}[ -][0-9]{2,6}[ -]?[0-9]"  # card
    r"|(?<=1)[ .-]?\(|(?<=1)[ .-]?[0-9]{3}[ .-]|[0-9]{2}[ .-][0-9]{3}"  # US phone
    r"|[0-9]{0,2}\.[0-9]{1,3}\.)"  # IPv4
    r"|(?<=[@+(:])(?:(?<=@)|(?<=\+)[1-9]|(?<=\()[0-9]{3}\)"
    r"|(?<=:):|(?<=:)[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:))"
)

# Rarest first, in English prose and in code. An anchor is looked for at its rarest character
# (`k` of `token`, `J` of `eyJ`), so that the scan rarely leaves re's first-character skip loop.
_RARITY = "jqzxkvwybg-:fmpucdhl_rosniate"

Entries = list[tuple[int, StartRule | None]]  # (detector index, start rule)
# (detector index, start rule, what must follow the literal: `_Detector.follow`)
LiteralEntries = list[tuple[int, StartRule | None, Callable[[str, int], object] | None]]


def _rarity(ch: str, case_insensitive: bool) -> int:
    rank = _RARITY.find(ch.lower())
    rank = len(_RARITY) if rank < 0 else rank
    return rank - 100 if ch.isupper() and not case_insensitive else rank


AnchorTable = dict[str, list[tuple[str, int, bool, LiteralEntries]]]


def _compile_anchors(
    literals: dict[tuple[str, bool], LiteralEntries],
) -> tuple[re.Pattern, AnchorTable]:
    """One regex matching every anchor from its rarest character on, and a table from the
    lower-cased matched text to (literal, offset of that character, case-insensitive, entries)."""
    alternatives: dict[str, list[tuple[int, str]]] = {}
    table: AnchorTable = {}

    def chars_at(literal: str, k: int, ci: bool) -> set[str]:
        return {literal[k].lower(), literal[k].upper()} if ci else {literal[k]}

    def rarest(literal: str, ci: bool, among: set[str] | None = None) -> int | None:
        ks = [k for k in range(len(literal))
              if among is None or chars_at(literal, k, ci) <= among]
        return min(ks, key=lambda k: _rarity(literal[k], ci)) if ks else None

    # Each character the scan stops at costs on every occurrence in the text: a literal whose
    # rarest character no other literal is keyed on, but which holds one that another is keyed
    # on, is keyed on that one instead (`hf_` on the `h` of `https`, not on an `f` of its own).
    chosen = {key: rarest(*key) for key in literals}
    users: dict[str, int] = {}
    for (literal, ci), i in chosen.items():
        for c in chars_at(literal, i, ci):
            users[c] = users.get(c, 0) + 1
    for (literal, ci), i in chosen.items():
        own = chars_at(literal, i, ci)
        if all(users[c] == 1 for c in own):
            shared = {c for c, n in users.items() if n and c not in own}
            j = rarest(literal, ci, shared)
            if j is not None:
                chosen[(literal, ci)] = j
                for c in own:
                    users[c] -= 1
    for (literal, ci), entries in literals.items():
        i = chosen[(literal, ci)]
        wrap = "(?ai:{})".format if ci else "{}".format
        behind = f"(?<={wrap(re.escape(literal[: i + 1]))})" if i else ""
        ahead = wrap(re.escape(literal[i + 1 :])) if literal[i + 1 :] else ""
        chars = {literal[i].lower(), literal[i].upper()} if ci else {literal[i]}
        for ch in chars:
            alternatives.setdefault(ch, []).append((len(literal) - i, behind + ahead))
        table.setdefault(literal[i:].lower(), []).append((literal, i, ci, entries))
    # Every top-level alternative starts with a plain character: re then skips ahead by charset.
    # Longest first, so that `ACCA` is not found as `AC` (the table has both).
    pattern = "|".join(
        re.escape(ch)
        + (
            alts[0][1]
            if len(alts) == 1
            else "(?:{})".format("|".join(alt for _, alt in sorted(alts, key=lambda a: -a[0])))
        )
        for ch, alts in sorted(alternatives.items())
    )
    # The regex reports the longest anchor at a place; shorter ones found there are tried too
    # (`key-…` is a Mailgun key's start and the `key` of `api-key-2=…`).
    merged: AnchorTable = {
        key: [item for other in table if key.startswith(other) for item in table[other]]
        for key in table
    }
    return re.compile(pattern), merged


def _extra_detectors(extras: tuple[tuple[str, str], ...]) -> tuple[_Detector, ...]:
    detectors = []
    for name, pattern in extras:
        setting = f"TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS[{name!r}]"
        try:
            regex = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ImproperlyConfigured(f"{setting} is not a valid regex: {exc}") from exc
        if not isinstance(regex.pattern, str):
            raise ImproperlyConfigured(f"{setting} must be a str pattern, not bytes")
        if regex.fullmatch(""):
            raise ImproperlyConfigured(f"{setting} matches the empty string")
        detectors.append(_Detector(name, regex))
    return tuple(detectors)


def _free_key(out: dict, original: dict, key: str) -> str:
    """``key`` (a redacted dict key), or ``key#2``, ``key#3``… when that is already taken in
    ``out`` or ``original``: two keys that redact alike keep both their values."""
    if key not in out and key not in original:
        return key
    n = 2
    while f"{key}#{n}" in out or f"{key}#{n}" in original:
        n += 1
    return f"{key}#{n}"


# --- the engine ----------------------------------------------------------------------------------


class Redactor:
    """Redacts strings and JSON-like values under one policy. Build it with `get_redactor`."""

    def __init__(
        self,
        policy: str = DEFAULT_POLICY,
        extra_patterns: Mapping[str, str] | tuple[tuple[str, str], ...] = (),
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown redaction policy {policy!r}; expected one of {POLICIES}")
        if isinstance(extra_patterns, Mapping):
            extra_patterns = tuple(extra_patterns.items())
        self.policy = policy
        self.extra_patterns = extra_patterns
        self._off = policy == "off"
        self._strict = policy == "strict"
        self._extras = () if self._off else _extra_detectors(extra_patterns)
        self._detectors = _STANDARD + (_STRICT if self._strict else ())
        literals: dict[tuple[str, bool], LiteralEntries] = {}
        self._by_char: dict[str, Entries] = {}  # strict anchor character -> detectors
        for i, det in enumerate(self._detectors):
            follow = det.follow.match if det.follow is not None else None
            for literal in det.anchors:
                literals.setdefault((literal, False), []).append((i, det.start, follow))
            for literal in det.keywords:
                literals.setdefault((literal, True), []).append((i, det.start, follow))
            for char in det.anchor_chars:
                self._by_char.setdefault(char, []).append((i, det.start))
        anchors, self._by_anchor = _compile_anchors(literals)
        self._find_anchor = anchors.search
        self._clean: set[str] = set()  # short strings known to hold no anchor
        self._keys: dict[str, str] = {}  # dict key -> the key redacted (the same object if clean)

    def __repr__(self) -> str:
        return f"<Redactor policy={self.policy!r} extra_patterns={len(self.extra_patterns)}>"

    # -- strings --

    def text(self, s: str) -> str:
        """`s` with every secret replaced by its label (the same object when nothing changed)."""
        return self.text_with_count(s)[0]

    def text_with_count(self, s: str) -> tuple[str, int]:
        """Like `text`, plus how many secrets were replaced. Non-str input comes back as it is."""
        if self._off or not isinstance(s, str):
            return s, 0
        return self._scan(s)

    def _scan(self, s: str) -> tuple[str, int]:
        count = 0
        for det in self._extras:
            s, n = self._extra_pass(det, s)
            count += n
        first = self._find_anchor(s)
        if first is None and (not self._strict or not _STRICT_ANCHORS.search(s)):
            return s, count
        s, n = self._redact_at(s, self._candidates(s, first))
        return s, count + n

    @staticmethod
    def _extra_pass(det: _Detector, s: str) -> tuple[str, int]:
        label = _label(det.name)
        hits = 0

        def replace(m: re.Match[str]) -> str:
            nonlocal hits
            if m.end() == m.start():  # a lookahead-only pattern: nothing to remove
                return ""
            hits += 1
            return label

        return det.regex.sub(replace, s), hits

    def _candidates(self, s: str, m: re.Match[str] | None) -> list[tuple[int, int]]:
        """(start offset, detector index) pairs worth trying: detectors run only at anchors.
        ``m``: the first anchor in ``s`` (already found by the caller), or None."""
        found: list[tuple[int, int]] = []
        find = self._find_anchor
        while m is not None:
            p = m.start()
            for literal, offset, ci, entries in self._by_anchor[m.group().lower()]:
                at = p - offset
                piece = s[at : at + len(literal)] if at >= 0 else ""
                if piece == literal or (ci and piece.lower() == literal):
                    for index, rule, follow in entries:
                        if follow is not None and follow(s, at + len(literal)) is None:
                            continue
                        start = at if rule is None else rule(s, at)
                        if start is not None:
                            found.append((start, index))
            m = find(s, p + 1)  # overlapping anchors too: `ASIAKIA…`, `secretoken`
        if self._strict:
            m = _STRICT_ANCHORS.search(s)
            while m is not None:
                p = m.start()
                for index, rule in self._by_char[s[p]]:
                    start = p if rule is None else rule(s, p)
                    if start is not None:
                        found.append((start, index))
                m = _STRICT_ANCHORS.search(s, p + 1)
        found.sort()
        return found

    def _redact_at(self, s: str, candidates: list[tuple[int, int]]) -> tuple[str, int]:
        pieces: list[str] = []
        last = 0
        previous = None
        for start, index in candidates:
            if start < last or (start, index) == previous:
                continue
            previous = (start, index)
            det = self._detectors[index]
            m = det.regex.match(s, start)
            if m is None or m.end() == start:
                continue
            replacement = det.render(m) if det.render else _label(det.name)
            if replacement is None:
                continue
            pieces.append(s[last:start])
            pieces.append(replacement)
            last = m.end()
        if not pieces:
            return s, 0
        pieces.append(s[last:])
        return "".join(pieces), len(pieces) // 2

    # -- keys --

    def key_is_sensitive(self, key: object) -> bool:
        """Whether values under `key` are secrets (whatever the policy; non-str keys as str)."""
        return self._classify_key(key) is not None

    @staticmethod
    def _classify_key(key: object) -> str | None:
        if not isinstance(key, str):
            try:
                key = str(key)
            except Exception:
                return None
        return _key_class(key)

    # -- structures --

    def value(self, v: object) -> object:
        """A redacted copy of `v` (dicts, lists, tuples, sets, str, bytes; other scalars as-is)."""
        return self.value_with_count(v)[0]

    def value_with_count(self, v: object) -> tuple[object, int]:
        """Like `value`, plus how many secrets were replaced."""
        if self._off:
            return v, 0
        counter = [0]
        return self._walk(v, 0, counter), counter[0]

    def _walk(self, v: object, depth: int, counter: list[int]) -> object:
        kind = type(v)
        if kind is str:
            out, n = self._scan(v)
            counter[0] += n
            return out
        if kind in _PLAIN:
            return v
        if isinstance(v, (dict, list, tuple, set, frozenset)) and depth >= MAX_DEPTH:
            counter[0] += 1
            return _label("max_depth")
        if isinstance(v, dict):
            return self._walk_dict(v, depth, counter)
        if isinstance(v, (list, tuple)):
            items = [self._walk(item, depth + 1, counter) for item in v]
            return items if isinstance(v, list) else tuple(items)
        if isinstance(v, (set, frozenset)):
            return type(v)(self._walk(item, depth + 1, counter) for item in v)
        if isinstance(v, str):  # a str subclass
            out, n = self._scan(str(v))
            counter[0] += n
            return out if n else v
        if isinstance(v, (bytes, bytearray)):
            return self._walk_bytes(v, counter)
        return v

    def _walk_dict(self, v: dict, depth: int, counter: list[int]) -> dict:
        pair_class = None
        if "value" in v:  # {"key": "x-api-key", "value": ...}: OTLP JSON attributes, k8s env
            name = v.get("key", v.get("name"))
            if isinstance(name, str):
                pair_class = _key_class(name)
        out = {}
        scan = self._scan
        # A short string without any anchor is returned by `_scan` as it is: look for one here
        # and save the call (most attribute values: names, ids, models, enums).
        find = None if self._extras or self._strict else self._find_anchor
        clean = self._clean
        keys = self._keys
        for key, item in v.items():
            if pair_class is not None and key == "value":
                key_class: str | None = pair_class
            else:
                key_class = _key_class(key) if type(key) is str else self._classify_key(key)
            if type(key) is str:  # a key that is itself a secret is replaced too
                new_key = keys.get(key)
                if new_key is None:
                    new_key = scan(key)[0]
                    if len(keys) >= _CLEAN_MAX:
                        keys.clear()
                    keys[key] = new_key
                if new_key != key:
                    counter[0] += 1
                    key = _free_key(out, v, new_key)
            if key_class is not None:
                out[key] = self._whole(key_class, item, depth + 1, counter)
                continue
            kind = type(item)  # the common leaves inline: this loop runs for every event
            if kind is str:
                if find is not None and len(item) <= _INLINE_SCAN_MAX:
                    if item in clean:
                        out[key] = item
                        continue
                    if find(item) is None:
                        if len(clean) >= _CLEAN_MAX:
                            clean.clear()
                        clean.add(item)
                        out[key] = item
                        continue
                out[key], n = scan(item)
                counter[0] += n
            elif kind in _PLAIN:
                out[key] = item
            else:
                out[key] = self._walk(item, depth + 1, counter)
        return out

    def _walk_bytes(self, v: bytes | bytearray, counter: list[int]) -> bytes | bytearray:
        out, n = self.text_with_count(bytes(v).decode("utf-8", "surrogateescape"))
        if not n:
            return v
        counter[0] += n
        return type(v)(out.encode("utf-8", "surrogateescape"))

    def _whole(self, key_class: str, v: object, depth: int, counter: list[int]) -> object:
        """Replace a value found under a sensitive key."""
        if v is None or isinstance(v, bool) or (isinstance(v, (str, list, tuple, dict)) and not v):
            return v
        if isinstance(v, str):
            replacement = _secret_replacement(key_class, v)
            if replacement is None:
                return v
            counter[0] += 1
            return replacement
        if isinstance(v, (list, tuple)) and depth < MAX_DEPTH:
            items = [self._whole(key_class, item, depth + 1, counter) for item in v]
            return items if isinstance(v, list) else tuple(items)
        counter[0] += 1
        return _label(key_class)


# --- module API ----------------------------------------------------------------------------------


def _setting(name: str, default: object) -> object:
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:  # settings not configured: a bare script, a one-off tool
        return default


def current_policy() -> str:
    """The configured policy (settings.TRACEFOUNDRY_REDACTION_POLICY), default `standard`."""
    policy = _setting("TRACEFOUNDRY_REDACTION_POLICY", None)
    if policy is None:
        return DEFAULT_POLICY
    return str(policy).strip().lower()


def _extra_patterns() -> tuple[tuple[str, str], ...]:
    extras = _setting("TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS", None)
    if not extras:
        return ()
    if not isinstance(extras, Mapping):
        raise ImproperlyConfigured(
            "TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS must be a dict of label -> regex string"
        )
    return tuple((str(name), pattern) for name, pattern in extras.items())


@functools.lru_cache(maxsize=32)
def _build(policy: str, extras: tuple[tuple[str, str], ...]) -> Redactor:
    return Redactor(policy, extras)


# Requested policy (None: the configured one) -> redactor. Reading settings costs microseconds,
# more than redacting a short string, so they are read once and again after `setting_changed`
# (override_settings, pytest-django's `settings` fixture), as DRF does for its own settings.
_resolved: dict[str | None, Redactor] = {}


def _forget_resolved(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("TRACEFOUNDRY_REDACTION_"):
        _resolved.clear()


setting_changed.connect(_forget_resolved)


def get_redactor(policy: str | None = None) -> Redactor:
    """The redactor for `policy` (None: the configured one), cached per (policy, extra patterns)."""
    try:
        return _resolved[policy]
    except (KeyError, TypeError):
        pass
    name = current_policy() if policy is None else policy
    if name not in POLICIES:
        raise ValueError(f"unknown redaction policy {name!r}; expected one of {POLICIES}")
    extras = () if name == "off" else _extra_patterns()
    try:
        redactor = _build(name, extras)
    except TypeError:  # an unhashable pattern: build uncached so the real error surfaces
        redactor = Redactor(name, extras)
    if settings.configured:  # else settings may yet be configured, and say otherwise
        _resolved[policy] = redactor
    return redactor


def redact_text(s: str, *, policy: str | None = None) -> str:
    return get_redactor(policy).text(s)


def redact_value(v: object, *, policy: str | None = None) -> object:
    return get_redactor(policy).value(v)
