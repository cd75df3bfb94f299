"""Importing a trace's spans from a bundle: through the live ingest (``spans_ingest``), so the
receiving project's redaction policy, the GenAI extraction and the summaries apply as for any
OTLP batch, with the trace tagged ``source=bundle_import``.

Before the ingest, the decoded spans are adjusted the way the import promises:

- every resource gets ``deployment.environment.name`` = ``environment`` (the trace's
  environment comes from it); an original environment that differed is kept under
  ``tracefoundry.bundle.environment``;
- ``tracefoundry.run_id`` is rewritten with ``run_ids`` (the bundle's run → the run it was
  imported as), so the trace links to the imported run;
- payload references (``tracefoundry.payload.<role>_ref`` attributes of spans and span events)
  are rewritten with ``payload_refs`` (a bundle blob's hash → the hash it was stored as here),
  and a PayloadRef row is written for each, as the ingest does for the values it moves to
  blobs itself: the blobs resolve for the project's keys and retention keeps them. References
  to blobs the bundle did not hold stay as they are, and get no row.

``spans_import_prepare`` runs first, before any blob is stored: it drops the references a
``strict`` project would never have made, and says which blobs the spans need.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone

from payloads.allowlist import is_allowed
from payloads.redaction import get_redactor
from traces.models import Trace, TraceSource
from traces.otlp_decode import SpanRecord
from traces.services import RUN_ID_ATTRIBUTE, IngestResult, spans_ingest
from traces.span_payloads import REF_PREFIX, role_for
from traces.span_store import span_payload_refs_insert

ENVIRONMENT_KEY = "deployment.environment.name"
_LEGACY_ENVIRONMENT_KEY = "deployment.environment"
ORIGINAL_ENVIRONMENT_KEY = "tracefoundry.bundle.environment"
_SHA_PREFIX = "sha256:"
_REF_SUFFIX = "_ref"
_ROLES = frozenset({"input", "output", "prompt", "completion", "tool_args", "tool_result",
                    "attribute"})

# (blob sha256, trace id, span id, role, json path)
_Ref = tuple[str, str, str, str, str]


def spans_import_prepare(*, project, records: list[SpanRecord]) -> set[str]:
    """Before the blobs are stored: drop the payload references the project's policy would
    never have made, and return the hashes of the blobs the spans still refer to (the import
    stores those, and only those).

    Under ``strict`` the ingest keeps only allowlisted attributes, and only their values can
    become blobs: a reference whose attribute the allowlist drops goes, so a prompt a strict
    project would never store is not stored through an import either."""
    strict = get_redactor(project.redaction_policy or None).policy == "strict"
    wanted: set[str] = set()
    for record in records:
        for attributes in _attribute_maps(record):
            for key, sha256, _, source in _refs(attributes):
                if strict and (source is None or not is_allowed(source)):
                    del attributes[key]
                else:
                    wanted.add(sha256)
    return wanted


def spans_import(
    *, project, records: list[SpanRecord], environment: str,
    run_ids: Mapping[str, str] | None = None, payload_refs: Mapping[str, str] | None = None,
) -> IngestResult:
    """Ingest a bundle's decoded spans into ``project`` (see the module docstring)."""
    run_ids, payload_refs = dict(run_ids or {}), dict(payload_refs or {})
    refs: set[_Ref] = set()
    tagged: set[int] = set()
    for record in records:
        if id(record.resource) not in tagged:
            tagged.add(id(record.resource))
            _tag_environment(record.resource, environment)
        run_id = record.attributes.get(RUN_ID_ATTRIBUTE)
        if isinstance(run_id, str) and run_id in run_ids:
            record.attributes[RUN_ID_ATTRIBUTE] = run_ids[run_id]
        for path, attributes in zip(_paths(record), _attribute_maps(record), strict=True):
            for key, sha256, role, source in _refs(attributes):
                stored = payload_refs.get(sha256)
                if stored is None:
                    continue
                attributes[key] = _SHA_PREFIX + stored
                refs.add((stored, record.trace_id, record.span_id, role,
                          f"{path}/{source or key}"))
    with transaction.atomic():
        result = spans_ingest(project=project, records=records, source=TraceSource.BUNDLE_IMPORT)
        pks = dict(Trace.objects.filter(project=project, trace_id__in=result.trace_ids)
                   .values_list("trace_id", "pk"))
        span_payload_refs_insert(
            sorted((sha256, pks[trace_id], span_id, role, path)
                   for sha256, trace_id, span_id, role, path in refs if trace_id in pks),
            now=timezone.now(),
        )
    return result


def _tag_environment(resource: dict, environment: str) -> None:
    original = resource.get(ENVIRONMENT_KEY, resource.get(_LEGACY_ENVIRONMENT_KEY))
    if original not in (None, "", environment):
        resource[ORIGINAL_ENVIRONMENT_KEY] = original
    resource[ENVIRONMENT_KEY] = environment


def _attribute_maps(record: SpanRecord) -> list[dict]:
    """The span's attributes and its events' (where payload references live)."""
    maps = [record.attributes]
    maps += [e["attributes"] for e in record.events if isinstance(e.get("attributes"), dict)]
    return maps


def _paths(record: SpanRecord) -> list[str]:
    """The ingest's json path of each of ``_attribute_maps``."""
    return ["attributes", *(f"events/{i}/attributes" for i, e in enumerate(record.events)
                            if isinstance(e.get("attributes"), dict))]


def _refs(attributes: dict) -> list[tuple[str, str, str, str | None]]:
    """(ref key, blob sha256, role, the attribute whose value it holds or None) of each payload
    reference among ``attributes``."""
    found = []
    used: set[str] = set()
    for key, value in list(attributes.items()):
        if not (key.startswith(REF_PREFIX) and key.endswith(_REF_SUFFIX)
                and isinstance(value, str) and value.startswith(_SHA_PREFIX)):
            continue
        named = key[len(REF_PREFIX):-len(_REF_SUFFIX)]
        role = named if named in _ROLES else role_for(named)
        source = named if named in attributes else _preview_key(attributes, role, used)
        if source is not None:
            used.add(source)
        found.append((key, value[len(_SHA_PREFIX):], role, source))
    return found


def _preview_key(attributes: dict, role: str, used: set[str]) -> str | None:
    """The attribute whose value a role-named ref replaced: the first of that role holding a
    preview (the ingest writes ``<first 512 characters>…``), if any."""
    for key, value in attributes.items():
        if key not in used and not key.startswith(REF_PREFIX) and role_for(key) == role \
                and isinstance(value, str) and value.endswith("…"):
            return key
    return None
