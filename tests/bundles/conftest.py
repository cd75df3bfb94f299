"""Fixtures of the bundle tests: a client that uploads bundles, and the check that a refused
bundle left nothing behind (no row, no file under the payload store or anywhere near it)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from payloads.models import PayloadBlob, PayloadRef
from runs.models import Run, RunEvent, Step
from tests.bundles.builders import upload
from traces.models import Span, Trace

MODELS = (Trace, Span, Run, RunEvent, Step, PayloadBlob, PayloadRef)


def _rows() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


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
def post_bundle(engineer_client):
    """POST a bundle's bytes to an endpoint (``import`` or ``dry-replay``)."""

    def post(data: bytes, endpoint: str = "import", *, client=None, query: str = ""):
        client = client or engineer_client
        return client.post(f"/api/v1/bundles/{endpoint}{query}", {"file": upload(data)},
                           format="multipart")

    return post
