"""Shared fixtures: users in each role, API keys, authenticated API clients, isolated blobs."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.test import APIClient

from payloads.models import PayloadBlob, PayloadRef
from runs.models import Project, Run, RunEvent, Step
from runs.selectors import project_policy_overrides_forget, project_slug
from tests.factories import ApiKeyFactory, ProjectFactory, UserFactory
from tests.tracefoundry.factories import PASSWORD
from tracefoundry.selectors import apikey_forget
from traces.models import Span, Trace


def pytest_configure(config):
    """Suites running at once on one Redis (and their live servers) get their own channel and
    cache prefixes, so one never hears another's groups or counts its throttles."""
    import os

    from django.conf import settings

    prefix = f"tftest{os.getpid()}"
    os.environ["CHANNEL_LAYER_PREFIX"] = prefix
    os.environ["CACHE_KEY_PREFIX"] = prefix
    config_ = settings.CHANNEL_LAYERS["default"].get("CONFIG")
    if config_ is not None:
        config_["prefix"] = prefix
    settings.CACHES["default"]["KEY_PREFIX"] = prefix


def pytest_collection_modifyitems(config, items):
    from django.db import connection

    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="PostgreSQL-only (run with DATABASE_URL=postgres://…)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file database (WAL, like the product) rather than shared-cache memory,
    where a reader and a writer on two threads fail with "table is locked" at once."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and not db.get("TEST", {}).get("NAME"):
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "payloads": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "payloads"), "allow_overwrite": True},
        },
    }
    settings.TRACEFOUNDRY_THROTTLE_RATES = {"enqueue": None, "cancel": None, "ingest": None}
    # Real password checks on every Basic-auth request, without PBKDF2's deliberate slowness.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    apikey_forget()
    project_slug.cache_clear()
    project_policy_overrides_forget()


@pytest.fixture
def payload_dir(settings):
    return Path(settings.STORAGES["payloads"]["OPTIONS"]["location"])


# --- "nothing was stored": rows and files, for refusals that must leave no trace -------------

STORED_MODELS = (Trace, Span, Run, RunEvent, Step, PayloadBlob, PayloadRef)


def _rows() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in STORED_MODELS}


def _files(root: Path, *, recursive: bool) -> set[str]:
    if not root.exists():
        return set()
    if not recursive:
        return set(os.listdir(root))
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def nothing_written(payload_dir) -> Callable[[], object]:
    """``with nothing_written(): …``: asserts the block added no database row and no file in
    the payload store, in the directory around it (recursively), in the one above that, or in
    the working directory (where a relative path would land)."""

    @contextmanager
    def check() -> Iterator[None]:
        around = payload_dir.parent
        places = [(payload_dir, True), (around, True), (around.parent, False),
                  (Path.cwd(), False)]
        rows = _rows()
        before = [_files(p, recursive=r) for p, r in places]
        yield
        assert _rows() == rows
        after = [_files(p, recursive=r) for p, r in places]
        for (place, _), old, new in zip(places, before, after, strict=True):
            assert new == old, f"new files in {place}: {sorted(new - old)}"

    return check


@pytest.fixture
def project(db) -> Project:
    return Project.objects.get(slug="default")


@pytest.fixture
def other_project(db) -> Project:
    return ProjectFactory(slug="other", name="Other")


def _user_in(role: str | None, **kwargs):
    user = UserFactory(**kwargs)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(db):
    return _user_in("viewer", username="vera")


@pytest.fixture
def engineer(db):
    return _user_in("engineer", username="enzo")


@pytest.fixture
def admin_user(db):
    return _user_in("admin", username="ada")


@pytest.fixture
def no_role_user(db):
    return _user_in(None, username="nobody")


def client_for(user=None, raw_key: str | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=_basic(user.username))
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def _basic(username: str) -> str:
    token = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return f"Basic {token}"


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def viewer_client(viewer):
    return client_for(viewer)


@pytest.fixture
def engineer_client(engineer):
    return client_for(engineer)


@pytest.fixture
def admin_client_api(admin_user):
    return client_for(admin_user)


@pytest.fixture
def make_key(project):
    """Issue a real API key; returns (ApiKey, raw)."""

    def make(scopes: str, *, project_obj=None, user=None):
        key = ApiKeyFactory(project=project_obj or project, scopes=scopes, user=user, name="")
        return key, key.raw

    return make


@pytest.fixture
def key_client(make_key):
    def make(scopes: str, **kwargs) -> APIClient:
        _, raw = make_key(scopes, **kwargs)
        return client_for(raw_key=raw)

    return make


# --- end-to-end: a real deployment (tests/livestack.py) and headless Chromium -----------------

@pytest.fixture(scope="session")
def live_stack(tmp_path_factory):
    """A migrated database of its own and daphne servers started on demand (``.server()``)."""
    from tests.livestack import LiveStack

    stack = LiveStack.create(tmp_path_factory.mktemp("live"))
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright (installed by .ci/run; skipped when absent)."""
    from tests.livestack import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    yield page
    context.close()
