"""The redaction engine: every secret class, false-positive guards, policies, structures, settings.

Fake secrets are assembled from pieces so that no literal in this file looks like a real one.
"""

from __future__ import annotations

import base64
import json
import random

import pytest
from django.core.exceptions import ImproperlyConfigured

from payloads.redaction import (
    MAX_DEPTH,
    POLICIES,
    REDACTED,
    Redactor,
    current_policy,
    get_redactor,
    redact_text,
    redact_value,
)

AWS_KEY = "AKIA" + "Q3EXAMPLE7" + "ABCDEF"
AWS_TEMP_KEY = "ASIA" + "Z9EXAMPLE1" + "QRSTUV"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
OPENAI_KEY = "sk-" + "proj-" + "Ab3dE" * 10
OPENAI_LEGACY_KEY = "sk-" + "T3Blbk" + "x9Q" * 14
ANTHROPIC_KEY = "sk-" + "ant-api03-" + "Zz9_" * 20
GITHUB_TOKEN = "ghp_" + "A" * 36
GITHUB_APP_TOKEN = "ghs_" + "b7" * 18
GITHUB_PAT = "github_pat_" + "11AB" * 6 + "_" + "cd3E" * 14
GITLAB_TOKEN = "glpat-" + "x1Y2z3" * 4
SLACK_TOKEN = "xoxb-" + "1234567890-" + "1234567890123-" + "AbCdEfGh" * 3
SLACK_HOOK_PATH = "T0000000/B0000000/" + "X" * 24
SLACK_WEBHOOK = "https://hooks.slack.com/services/" + SLACK_HOOK_PATH
JWT = (
    "eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0"
    "." + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
BEARER = "abc123" + "def456" * 4
BASIC = base64.b64encode(b"alice:" + b"s3cret-pw").decode()
PEM_BODY = ("MIIEow" + "IBAAKCAQEA" * 6 + "\n") * 3
PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\n" + PEM_BODY + "-----END RSA " + "PRIVATE KEY-----"
STRIPE_KEY = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
STRIPE_RESTRICTED = "rk_" + "test_" + "51Hx" * 8
GOOGLE_KEY = "AIza" + "SyD-" + "9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
SQUARE_TOKEN = "sq0atp-" + "B2xY" * 6
TWILIO_KEY = "SK" + "0123456789abcdef" * 2
SENDGRID_KEY = "SG." + "ngeVfQFYQlKU0ufo8x5d1A" + "." + "TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1"
MAILGUN_KEY = "key-" + "3a96f0d2" * 4
NPM_TOKEN = "npm_" + "Ab1Cd2Ef3G" * 3 + "h4Ij5K"
PYPI_TOKEN = "pypi-" + "AgEIcHlwaS5vcmc" + "CJDk3ZTk0" * 6
DOCKER_TOKEN = "dckr_pat_" + "Xy1-Zw2_" * 4
HF_TOKEN = "hf_" + "AbCdEfGhIj" * 3 + "KlMn"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq" + "/K1SZ==" 
AZURE_SIG = "Q7" + "abcDEF0123" * 4 + "%3D"


@pytest.fixture(autouse=True)
def _default_redaction(settings):
    settings.TRACEFOUNDRY_REDACTION_POLICY = "standard"
    settings.TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS = {}


@pytest.fixture
def standard():
    return get_redactor("standard")


@pytest.fixture
def strict():
    return get_redactor("strict")


def label(name: str) -> str:
    return REDACTED.format(name=name)


# --- every secret class is removed and named -----------------------------------------------------

SECRETS = [
    ("aws_access_key", f"boto3 client with key {AWS_KEY} in us-east-1", AWS_KEY),
    ("aws_access_key", f"temporary credentials {AWS_TEMP_KEY}.", AWS_TEMP_KEY),
    ("aws_secret_key", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    ("aws_secret_key", f'{{"SecretAccessKey": "{AWS_SECRET}", "Expiration": 1}}', AWS_SECRET),
    ("openai_key", f"client = OpenAI(api_key='{OPENAI_KEY}')", OPENAI_KEY),
    ("openai_key", f"using {OPENAI_LEGACY_KEY} for embeddings", OPENAI_LEGACY_KEY),
    ("anthropic_key", f"x {ANTHROPIC_KEY} y", ANTHROPIC_KEY),
    ("github_token", f"git push with {GITHUB_TOKEN}", GITHUB_TOKEN),
    ("github_token", f"token:{GITHUB_APP_TOKEN}", GITHUB_APP_TOKEN),
    ("github_token", f"GH={GITHUB_PAT}", GITHUB_PAT),
    ("gitlab_token", f"PRIVATE-TOKEN {GITLAB_TOKEN}", GITLAB_TOKEN),
    ("slack_token", f"slack bot {SLACK_TOKEN} posted", SLACK_TOKEN),
    ("slack_webhook", f"POST {SLACK_WEBHOOK} -d '{{}}'", SLACK_HOOK_PATH),
    ("jwt", f"session {JWT} expired", JWT),
    ("bearer_token", f"Authorization: Bearer {BEARER}", BEARER),
    ("bearer_token", f"curl -H 'Authorization: Bearer {BEARER}' https://api", BEARER),
    ("bearer_token", f"retrying with bearer {BEARER} after 401", BEARER),
    ("basic_auth", f"Authorization: Basic {BASIC}", BASIC),
    ("basic_auth", f"sent Basic {BASIC} to the proxy", BASIC),
    ("private_key", f"key file:\n{PEM}\nend of file", PEM_BODY.splitlines()[0]),
    ("url_password", "postgres://app:hunter2@db.internal:5432/app", "hunter2"),
    ("password", "connecting with password=hunter2 to db", "hunter2"),
    ("password", '{"username": "bob", "password": "correct horse"}', "correct horse"),
    ("password", "{'user': 'bob', 'passwd': 'p4ss'}", "p4ss"),
    ("password", '{\\"password\\": \\"hunter2\\"}', "hunter2"),
    ("password", "DB_PASSWORD=Tr0ub4dor&3 ./manage.py", "Tr0ub4dor"),
    ("api_key", "api_key: abc123", "abc123"),
    ("api_key", "curl -H 'X-Api-Key: 9f8e7d6c5b4a' https://api", "9f8e7d6c5b4a"),
    ("openai_key", f"OPENAI_API_KEY={OPENAI_KEY}", OPENAI_KEY),
    ("secret", "client_secret=Zm9vYmFyYmF6 grant_type=client_credentials", "Zm9vYmFyYmF6"),
    ("token", "GITHUB_TOKEN: 0123456789abcdef", "0123456789abcdef"),
    ("cookie", "Cookie: sessionid=abc123; csrftoken=def456", "sessionid=abc123"),
    ("cookie", "Set-Cookie: sessionid=abc123; Path=/; HttpOnly", "sessionid=abc123"),
    # Credential formats of the public secret-scanning rule sets, some glued to their text.
    ("aws_access_key", f"x{AWS_KEY}abc", AWS_KEY),
    ("stripe_key", f"stripe.api_key={STRIPE_KEY};", STRIPE_KEY),
    ("stripe_key", f"restricted:{STRIPE_RESTRICTED}", STRIPE_RESTRICTED),
    ("google_api_key", f"?key={GOOGLE_KEY}&q=1", GOOGLE_KEY),
    ("google_api_key", f"x{GOOGLE_KEY}", GOOGLE_KEY),
    ("square_token", f"square {SQUARE_TOKEN}", SQUARE_TOKEN),
    ("twilio_key", f"twilio sid {TWILIO_KEY}", TWILIO_KEY),
    ("sendgrid_key", f"SENDGRID={SENDGRID_KEY}", SENDGRID_KEY),
    ("mailgun_key", f"api:{MAILGUN_KEY}@api.mailgun.net", MAILGUN_KEY),
    ("npm_token", f"//registry.npmjs.org/:_authToken {NPM_TOKEN}", NPM_TOKEN),
    ("pypi_token", f"twine upload -p {PYPI_TOKEN}", PYPI_TOKEN),
    ("dockerhub_token", f"docker login -p {DOCKER_TOKEN}", DOCKER_TOKEN),
    ("huggingface_token", f"HF:{HF_TOKEN}", HF_TOKEN),
    ("github_token", f"auth=({GITHUB_TOKEN});", GITHUB_TOKEN),
    ("azure_storage_key", f"AccountName=a;AccountKey={AZURE_KEY};EndpointSuffix=x", AZURE_KEY),
    ("azure_sas", f"https://a.blob.core.windows.net/c?sv=1&sig={AZURE_SIG}", AZURE_SIG),
    ("private_key", f"PRIVATE_KEY={PEM}", PEM_BODY.splitlines()[1]),
    ("private_key", f"password: {PEM}", PEM_BODY.splitlines()[2]),
    ("private_key", json.dumps(json.dumps({"private_key": PEM})), PEM_BODY.splitlines()[1]),
]


@pytest.mark.parametrize(("name", "text", "secret"), SECRETS)
def test_each_secret_class_is_removed_and_named(standard, name, text, secret):
    out = standard.text(text)
    assert label(name) in out
    assert secret not in out


@pytest.mark.parametrize(("name", "text", "secret"), SECRETS)
def test_strict_removes_the_same_secrets(strict, name, text, secret):
    out = strict.text(text)
    assert secret not in out


def test_replacements_keep_the_surrounding_text(standard):
    assert standard.text(f"aws key {AWS_KEY} leaked") == f"aws key {label('aws_access_key')} leaked"
    assert standard.text(f"Authorization: Bearer {BEARER}\nAccept: */*") == (
        f"Authorization: Bearer {label('bearer_token')}\nAccept: */*"
    )
    assert standard.text('{"password": "hunter2", "n": 1}') == (
        f'{{"password": "{label("password")}", "n": 1}}'
    )
    assert standard.text(f"POST {SLACK_WEBHOOK}") == (
        f"POST https://hooks.slack.com/services/{label('slack_webhook')}"
    )


def test_a_private_key_block_goes_whole(standard):
    out = standard.text(f"before\n{PEM}\nafter")
    assert out == f"before\n{label('private_key')}\nafter"
    assert "BEGIN" not in out and "END" not in out


def test_a_truncated_private_key_block_is_still_redacted(standard):
    truncated = PEM[: len(PEM) // 2]
    out = standard.text(f"key: {truncated}")
    assert label("private_key") in out
    assert "IBAAKCAQEA" not in out


def test_a_json_escaped_private_key_block_goes_whole(standard):
    escaped = PEM.replace("\n", "\\n")
    out = standard.text(f'{{"private_key_pem": "{escaped}", "ok": true}}')
    assert "IBAAKCAQEA" not in out
    assert out.endswith('", "ok": true}')


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://app:hunter2@db.internal:5432/app",
            f"postgres://app:{label('url_password')}@db.internal:5432/app",
        ),
        ("redis://:s3cr3t@cache:6379/0", f"redis://:{label('url_password')}@cache:6379/0"),
        (
            "amqp://guest:p@ss:w0rd@mq.local/vhost",
            f"amqp://guest:{label('url_password')}@mq.local/vhost",
        ),
        (
            f"https://x-access-token:{GITHUB_APP_TOKEN}@github.com/org/repo.git",
            f"https://x-access-token:{label('github_token')}@github.com/org/repo.git",
        ),
    ],
)
def test_url_passwords_keep_user_and_host(standard, url, expected):
    assert standard.text(f"cloning {url} now") == f"cloning {expected} now"


def test_counts_say_how_many_secrets_were_replaced(standard):
    text = f"{AWS_KEY} and {GITHUB_TOKEN} and password=hunter2"
    out, count = standard.text_with_count(text)
    assert count == 3
    assert out == (
        f"{label('aws_access_key')} and {label('github_token')} and password={label('password')}"
    )
    assert standard.text_with_count("nothing to see here") == ("nothing to see here", 0)


# --- false positives: ordinary text survives untouched -------------------------------------------

ORDINARY = [
    "reading file src/app.py",
    "step 3 of 10",
    "prompt_tokens=1234 completion_tokens=56 total_tokens=1290",
    "max_tokens: 4096, temperature: 0.2, top_p: 1",
    '{"gen_ai.usage.input_tokens": 1234, "gen_ai.usage.output_tokens": 56, "token_count": 9}',
    "llm.token_count.prompt=812",
    "run 123e4567-e89b-12d3-a456-426614174000 finished",
    "commit 3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e4b6d8f0a by ci",
    "started 2024-05-01T12:00:00.123456Z, finished 2024-05-01T12:00:03+02:00",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "The agent read the repository, planned three edits, and ran the tests. All 42 passed.",
    "Token: the smallest unit of text a model reads.",
    "the bearer of bad news had a basic understanding of the key points",
    "pip install scikit-learn; sk-learn-compatible-estimators are fine",
    "a tokenizer splits text into tokens; the cache_key is a hash",
    "https://example.com:8443/v1/runs?page=2&cursor=abc",
    "git@github.com:org/repo.git and bob@example.com",
    "call +1 (555) 123-4567 or visit 10.0.0.1",
    "def login(user: str, password: str) -> bool:\n    return check(user, password=password)",
    "token = os.environ['GITHUB_TOKEN']\napi_key=settings.OPENAI_API_KEY",
    "password: Optional[str] = None",
    "password=${DB_PASSWORD} api_key=*** secret=None",
    "for key, value in items.items(): print(key, value)",
    "author: Jane Doe, auth_required: false, keyboard: us",
    "redacted earlier: password=[REDACTED:password] Bearer [REDACTED:bearer_token]",
    "",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_survives_standard(standard, text):
    assert standard.text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "started 2024-05-01T12:00:00.123456Z",
        "epoch 1714564800 ms 1714564800123",
        "run 123e4567-e89b-12d3-a456-426614174000",
        "commit 3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e4b6d8f0a",
        "step 3 of 10, version 1.2.3, took 12:30:05",
        "mac 00:1a:2b:3c:4d:5e, slice a[::2], std::vector<int>",
        "order 4111111111111112 is not a card (Luhn fails)",
        "id 1234567890123456789",
        "gen_ai.usage.output_tokens=56",
    ],
)
def test_ordinary_numbers_survive_strict(strict, text):
    assert strict.text(text) == text


# --- strict: personal data ----------------------------------------------------------------------

PII = [
    ("email", "contact bob.smith+ci@example.co.uk today", "bob.smith+ci@example.co.uk"),
    ("phone", "call +1 (555) 123-4567 now", "123-4567"),
    ("phone", "call 555-123-4567 now", "555-123-4567"),
    ("phone", "call (555) 123-4567 now", "(555) 123-4567"),
    ("phone", "call 555.123.4567 now", "555.123.4567"),
    ("phone", "office +44 20 7946 0958 ext", "7946 0958"),
    ("phone", "mobile +4915112345678.", "4915112345678"),
    ("ip_address", "client 192.168.1.23:8080 connected", "192.168.1.23"),
    ("ip_address", "peer 2001:db8:85a3::8a2e:370:7334 closed", "2001:db8:85a3::8a2e:370:7334"),
    ("ip_address", "link-local fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a"),
    ("card_number", "card 4111 1111 1111 1111 charged", "4111 1111 1111 1111"),
    ("card_number", "card 5555-5555-5555-4444 charged", "5555-5555-5555-4444"),
    ("card_number", "amex 378282246310005 charged", "378282246310005"),
]


@pytest.mark.parametrize(("name", "text", "value"), PII)
def test_strict_removes_personal_data(strict, name, text, value):
    out = strict.text(text)
    assert label(name) in out
    assert value not in out


@pytest.mark.parametrize(("name", "text", "value"), PII)
def test_standard_keeps_personal_data(standard, name, text, value):
    assert standard.text(text) == text


# --- off -----------------------------------------------------------------------------------------


def test_off_changes_nothing():
    off = get_redactor("off")
    text = f"password=hunter2 {AWS_KEY} {PEM} bob@example.com"
    payload = {"password": "hunter2", "nested": [{"api_key": OPENAI_KEY}], "n": 1}
    assert off.text(text) is text
    assert off.value(payload) is payload
    assert off.text_with_count(text) == (text, 0)
    assert off.value_with_count(payload) == (payload, 0)


# --- structures ----------------------------------------------------------------------------------


def test_nested_structures_are_walked_and_copied(standard):
    payload = {
        "run_id": "run_01HZX3YV8Q9R6T5W4E3D2C1B0A",
        "args": ["--token", f"{GITHUB_TOKEN}", ("deploy", f"key={AWS_KEY}")],
        "env": {"HOME": "/root", "OPENAI_API_KEY": OPENAI_KEY},
        "steps": [{"tool": "bash", "output": f"export SLACK={SLACK_TOKEN}\nok"}],
        "gen_ai.usage.input_tokens": 1234,
        "ratio": 0.5,
        "done": True,
        "missing": None,
    }
    out = standard.value(payload)
    assert out["run_id"] == payload["run_id"]
    assert out["args"][1] == label("github_token")
    assert out["args"][2] == ("deploy", f"key={label('aws_access_key')}")
    assert isinstance(out["args"][2], tuple)
    assert out["env"] == {"HOME": "/root", "OPENAI_API_KEY": label("openai_key")}
    assert out["steps"][0]["output"] == f"export SLACK={label('slack_token')}\nok"
    assert out["gen_ai.usage.input_tokens"] == 1234
    assert (out["ratio"], out["done"], out["missing"]) == (0.5, True, None)
    assert payload["env"]["OPENAI_API_KEY"] == OPENAI_KEY  # the input is not mutated


def test_values_under_sensitive_keys_are_replaced_whole(standard):
    payload = {
        "password": "correct horse battery staple",
        "Authorization": f"Bearer {BEARER}",
        "headers": {"x-api-key": "k-123", "Cookie": "a=1; b=2", "Accept": "*/*"},
        "client_secret": {"nested": "dict"},
        "pin_password": 1234,
        "refresh_token": None,
        "api_key": "",
        "is_secret": False,
        "http.request.header.authorization": [f"Bearer {BEARER}"],
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    }
    out = standard.value(payload)
    assert out["password"] == label("password")
    assert out["Authorization"] == f"Bearer {label('bearer_token')}"
    assert out["headers"] == {
        "x-api-key": label("api_key"),
        "Cookie": label("cookie"),
        "Accept": "*/*",
    }
    assert out["client_secret"] == label("secret")
    assert out["pin_password"] == label("password")
    assert out["refresh_token"] is None
    assert out["api_key"] == ""
    assert out["is_secret"] is False
    assert out["http.request.header.authorization"] == [f"Bearer {label('bearer_token')}"]
    assert out["AWS_SECRET_ACCESS_KEY"] == label("aws_secret_key")


def test_token_counts_survive_in_structures(standard):
    usage = {
        "gen_ai.usage.input_tokens": 812,
        "gen_ai.usage.output_tokens": 56,
        "llm.token_count.total": 868,
        "max_tokens": 4096,
        "token_count": 868,
        "usage": {"prompt_tokens": 812, "completion_tokens": 56, "total_tokens": 868},
    }
    assert standard.value(usage) == usage


def test_key_value_pairs_are_judged_by_their_key(standard):
    payload = {
        "attributes": [
            {"key": "http.request.header.x-api-key", "value": {"stringValue": "k-123"}},
            {"key": "http.method", "value": {"stringValue": "GET"}},
        ],
        "env": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "HOME", "value": "/root"}],
    }
    out = standard.value(payload)
    assert out["attributes"][0]["value"] == label("api_key")
    assert out["attributes"][1] == payload["attributes"][1]
    assert out["env"] == [
        {"name": "DB_PASSWORD", "value": label("password")},
        {"name": "HOME", "value": "/root"},
    ]


def test_non_str_keys_are_checked_as_str_and_kept(standard):
    class Key:
        def __str__(self) -> str:
            return "api_key"

    key = Key()
    payload = {1: "password=hunter2", (2, "x"): "ok", None: GITHUB_TOKEN, key: "k-123"}
    out = standard.value(payload)
    assert list(out) == [1, (2, "x"), None, key]
    assert out[1] == f"password={label('password')}"
    assert out[None] == label("github_token")
    assert out[key] == label("api_key")


def test_bytes_are_redacted_as_utf8_text(standard):
    raw = b"\xff\xfe password=hunter2 \x00"
    out = standard.value({"body": raw, "other": bytearray(b"plain")})
    assert out["body"] == b"\xff\xfe password=[REDACTED:password] \x00"
    assert out["other"] == bytearray(b"plain")


def test_value_counts(standard):
    payload = {"password": "x", "list": [GITHUB_TOKEN, "fine", f"{AWS_KEY} {JWT}"], "n": 1}
    out, count = standard.value_with_count(payload)
    assert count == 4
    assert out["password"] == label("password")
    assert out["list"][2] == f"{label('aws_access_key')} {label('jwt')}"
    assert standard.value_with_count({"a": "b", "n": [1, 2]}) == ({"a": "b", "n": [1, 2]}, 0)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "accessToken",
        "refresh-token",
        "GITHUB_TOKEN",
        "csrftoken",
        "api_key",
        "apiKey",
        "API Key",
        "x-api-key",
        "OPENAI_API_KEY",
        "access_key",
        "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY",
        "private_key",
        "authorization",
        "Proxy-Authorization",
        "http.request.header.authorization",
        "cookie",
        "set-cookie",
        "Set-Cookie",
        "credentials",
        "basic_auth",
    ],
)
def test_sensitive_keys(standard, key):
    assert standard.key_is_sensitive(key)


@pytest.mark.parametrize(
    "key",
    [
        "token_count",
        "tokens",
        "input_tokens",
        "output_tokens",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "llm.token_count.prompt",
        "max_tokens",
        "total_tokens",
        "tokenizer",
        "token_type",
        "key",
        "cache_key",
        "primary_key",
        "idempotency_key",
        "keyboard",
        "author",
        "auth_required",
        "name",
        "model",
        42,
        None,
    ],
)
def test_not_sensitive_keys(standard, key):
    assert not standard.key_is_sensitive(key)


# --- settings: policy and extra patterns ---------------------------------------------------------


def test_policy_comes_from_settings(settings):
    text = f"mail bob@example.com with {GITHUB_TOKEN}"
    assert redact_text(text) == f"mail bob@example.com with {label('github_token')}"
    settings.TRACEFOUNDRY_REDACTION_POLICY = "strict"
    assert current_policy() == "strict"
    assert redact_text(text) == f"mail {label('email')} with {label('github_token')}"
    assert redact_value({"to": "bob@example.com"}) == {"to": label("email")}
    settings.TRACEFOUNDRY_REDACTION_POLICY = "off"
    assert redact_text(text) is text


def test_policy_defaults_to_standard(settings):
    del settings.TRACEFOUNDRY_REDACTION_POLICY
    assert current_policy() == "standard"
    assert get_redactor().policy == "standard"


def test_an_explicit_policy_wins_over_settings(settings):
    settings.TRACEFOUNDRY_REDACTION_POLICY = "off"
    assert redact_text("password=hunter2", policy="standard") == f"password={label('password')}"


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown redaction policy"):
        get_redactor("lenient")
    with pytest.raises(ValueError):
        Redactor("STRICT")
    assert set(POLICIES) == {"standard", "strict", "off"}


def test_redactors_are_cached_per_policy_and_extra_patterns(settings):
    assert get_redactor("standard") is get_redactor("standard")
    assert get_redactor("strict") is not get_redactor("standard")
    before = get_redactor("standard")
    settings.TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS = {"ticket": r"TCK-[0-9]{5}"}
    assert get_redactor("standard") is not before


def test_extra_patterns_apply_in_every_policy_but_off(settings):
    settings.TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS = {
        "employee_id": r"EMP-[0-9]{6}",
        "internal_host": r"(?i)[a-z0-9-]+\.corp\.example",  # global flags get a pass of their own
        "case": r"(CASE)-(\d+)",  # and so do groups
    }
    text = "EMP-123456 on build-7.CORP.example for CASE-99, EMP-12 is short"
    expected = (
        f"{label('employee_id')} on {label('internal_host')} for {label('case')}, EMP-12 is short"
    )
    assert redact_text(text) == expected
    assert redact_text(text, policy="strict") == expected
    assert redact_text(text, policy="off") == text
    assert get_redactor().text_with_count(text)[1] == 3


@pytest.mark.parametrize("pattern", ["EMP-[0-9", "x*"])
def test_bad_extra_patterns_are_a_configuration_error(settings, pattern):
    settings.TRACEFOUNDRY_REDACTION_EXTRA_PATTERNS = {"bad": pattern}
    with pytest.raises(ImproperlyConfigured, match="bad"):
        redact_text("anything")


# --- robustness ----------------------------------------------------------------------------------

ODD_TEXT = [
    "",
    "\x00" * 1000,
    "\ud800 lone surrogate \udfff",
    "emoji 🔑🗝️ rtl ‏שלום‎ combining é and zero-width\u200bjoin",
    "İstanbul İİİ " + GITHUB_TOKEN,  # "İ".lower() is two characters long
    "ſecret=x K token",
    "a" * 200_000 + " password=hunter2",
    (" :@+(1.=-_/" * 20_000),
    "-----BEGIN RSA PRIVATE KEY-----" * 2_000,
    "::" * 30_000,
    "token: " * 10_000,
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("text", ODD_TEXT, ids=range(len(ODD_TEXT)))
def test_odd_text_never_raises(policy, text):
    out = get_redactor(policy).text(text)
    assert isinstance(out, str)
    assert GITHUB_TOKEN not in out or policy == "off"


def test_odd_values_never_raise(standard):
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    loop: dict = {"password": "x"}
    loop["self"] = loop
    values = [
        None,
        3.5,
        float("nan"),
        10**100,
        object(),
        Weird(),
        {Weird(): "value", "set": {"a", f"k {AWS_KEY}"}, "fs": frozenset({1, 2})},
        loop,
        b"\xff\xfe\xfd",
        memoryview(b"password=hunter2"),
        ["text", 1, None, ("tuple", [b"bytes"])],
    ]
    for value in values:
        standard.value(value)
    out = standard.value(loop)
    assert out["password"] == label("password")
    assert standard.value({"set": {f"k {AWS_KEY}"}})["set"] == {f"k {label('aws_access_key')}"}
    assert standard.text(12345) == 12345  # non-str input to text() comes back as it is


def test_deep_nesting_is_cut_not_crashed(standard):
    deep: object = f"password=hunter2 {GITHUB_TOKEN}"
    for _ in range(10_000):
        deep = [deep]
    out = standard.value(deep)
    for _ in range(MAX_DEPTH):
        assert isinstance(out, list)
        out = out[0]
    assert out == label("max_depth")


def test_redaction_is_idempotent(standard, strict):
    corpus = [text for _, text, _ in SECRETS] + [text for _, text, _ in PII] + ORDINARY
    for redactor in (standard, strict):
        for text in corpus:
            once = redactor.text(text)
            assert redactor.text(once) == once


# --- the engine: anchors find everything an exhaustive scan would ------------------------------


def exhaustive(redactor: Redactor, s: str) -> str:
    """The definition: at each offset, the first detector (in priority order) that accepts it."""
    pieces: list[str] = []
    pos = last = 0
    while pos < len(s):
        for det in redactor._detectors:
            m = det.regex.match(s, pos)
            if m is None or m.end() == pos:
                continue
            replacement = det.render(m) if det.render else label(det.name)
            if replacement is not None:
                pieces += [s[last:pos], replacement]
                last = pos = m.end()
                break
        else:
            pos += 1
    return "".join(pieces) + s[last:] if pieces else s


FRAGMENTS = [
    *("password", "PASSWD", "pwd", "api_key", "x-api-key", "apiKey", "token", "max_tokens"),
    *("AccessToken", "auth", "OAuth", "author", "client_secret", "Set-Cookie", "Authorization"),
    *("=", ":", ": ", '"', "'", '\\"', " ", "\n", ",", ";", "&", "(", ")", "[", ".", "-", "_", "/"),
    *("@", "+", "%", "hunter2", "abc123", "None", "str", "os.environ", "${X}", "****"),
    *("sk-", "sk-ant-", "a1b2c3d4e5f6g7h8i9j0k1l2", "ghp_", "github_pat_", "glpat-", "xoxb-"),
    *("AKIA", "ASIA", "ABCDEFGHIJ234567", "eyJ", "eyJhbGciOiJIUzI1NiJ9", "Bearer", "basic"),
    *("dXNlcjpwYXNz", "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"),
    *("MIIEow" + "A" * 40, "https://", "postgres://", "user:pw@host", "hooks.slack.com/services/"),
    *("AIza", "SK", "AC", "ACCA", "key-", "0123456789abcdef", "hf_", "npm_", "sq0atp-", "EAAA"),
    *("SG.", "sig=", "?", "AccountKey=", "sk_live_", "whsec_", "dckr_pat_", "pypi-AgEIcHlwaS5vcmc"),
    *("bob@example.com", "+1 (555) 123-4567", "555-123-4567", "4111 1111 1111 1111"),
    *("378282246310005", "192.168.1.10", "2001:db8::1", "fe80::1%eth0", "::", "12:00:00"),
    *("2024-05-01T12:00:00.123Z", "1700000000000", "3f2a9c1e5b7d4f6a8c0e2b", "1", "22", "333"),
    *("A" * 20, "é", "İ", "ſ", "K", "\u200b", "日本"),
]


@pytest.mark.parametrize("policy", ["standard", "strict"])
def test_anchored_scan_matches_an_exhaustive_scan(policy):
    redactor = get_redactor(policy)
    rnd = random.Random(20240501)
    for _ in range(600):
        text = "".join(rnd.choice(FRAGMENTS) for _ in range(rnd.randint(1, 12)))
        assert redactor.text(text) == exhaustive(redactor, text), text


def test_a_secret_dict_key_is_replaced_and_collisions_keep_both_values(standard):
    other = "ghp_" + "B" * 36
    out = standard.value({GITHUB_TOKEN: 1, other: 2, "plain": {AWS_KEY: "x"}, "ok": 3})
    assert out == {
        label("github_token"): 1,
        label("github_token") + "#2": 2,
        "plain": {label("aws_access_key"): "x"},
        "ok": 3,
    }
    assert standard.value_with_count({GITHUB_TOKEN: 1})[1] == 1
    assert standard.value({"model": 1, "input_tokens": 2}) == {"model": 1, "input_tokens": 2}


@pytest.mark.parametrize("text", [
    "The SKU ACME ASIA region", "AIza is a prefix", "hf_token_count", "key-value store",
    "task-1234567890-abcdefghij", "SG.1 release", "EAAA batteries", "sk_live_x",
])
def test_new_prefixes_alone_are_not_secrets(standard, text):
    assert standard.text(text) == text
