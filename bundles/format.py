"""The bundle format: one zip holding a trace (and/or its run) that any TraceFoundry can import.

Entries (every name is fixed, or ``payloads/<64 lowercase hex>``):

``manifest.json``
    What the bundle holds and the SHA-256 and size of every other entry (ManifestSerializer).
``README.md``
    A short text for a person who opened the zip.
``spans.otlp.json``
    The trace's spans as OTLP JSON (an ``ExportTraceServiceRequest``): any OTLP tool reads it.
``run.json``
    The run's creation attributes and final state (when the bundle has a run).
``run_events.jsonl``
    The run's events, one JSON object a line, in ``seq`` order (when the bundle has a run).
``payloads/<sha256>``
    The stored bytes of each payload blob the spans and events refer to (full exports only);
    the name is the SHA-256 of the bytes.

The same trace exported twice gives byte-identical entries apart from ``created_at`` in the
manifest: entries are written in ENTRY_ORDER (payloads sorted by name) with a fixed timestamp,
JSON with sorted keys.
"""

from __future__ import annotations

import re

from rest_framework import serializers

FORMAT = "tracefoundry.bundle"
FORMAT_VERSION = 1
# The versions this code reads; a newer bundle is refused with a message naming both.
READABLE_VERSIONS = frozenset({1})

MANIFEST = "manifest.json"
README = "README.md"
SPANS = "spans.otlp.json"
RUN = "run.json"
RUN_EVENTS = "run_events.jsonl"
PAYLOADS_DIR = "payloads/"
ENTRY_ORDER = (MANIFEST, README, SPANS, RUN, RUN_EVENTS)  # then payloads/<sha256>, sorted
PAYLOAD_NAME_RE = re.compile(r"^payloads/[0-9a-f]{64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# A zip entry's date and time when none is meaningful: the earliest a zip can record.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)

EXPORT_MODES = ("full", "strict")
SOURCE_TAG = "bundle_import"  # Trace.source of an imported trace
ENVIRONMENT_TAG = "offline"  # Trace.environment of an imported trace


def is_entry_name(name: str) -> bool:
    """A name this format may hold (the only names an import accepts)."""
    return name in ENTRY_ORDER or bool(PAYLOAD_NAME_RE.match(name))


class FileEntrySerializer(serializers.Serializer):
    sha256 = serializers.RegexField(SHA256_RE.pattern)
    size = serializers.IntegerField(min_value=0)
    # Payload entries only, optional: the blob's media type, so an import stores it as it was
    # (without it the importer guesses: JSON or text).
    content_type = serializers.CharField(max_length=128, required=False)


class CountsSerializer(serializers.Serializer):
    spans = serializers.IntegerField(min_value=0)
    run_events = serializers.IntegerField(min_value=0)
    payloads = serializers.IntegerField(min_value=0)


class ManifestSerializer(serializers.Serializer):
    """``manifest.json``. Unknown keys are ignored (a later minor addition must not break an
    older reader); a different ``format`` or an unreadable ``format_version`` is refused."""

    format = serializers.ChoiceField([FORMAT])
    format_version = serializers.IntegerField(min_value=1)
    created_at = serializers.DateTimeField()
    product_version = serializers.CharField(max_length=64)
    git_commit = serializers.CharField(max_length=64, allow_null=True, allow_blank=True)
    environment = serializers.DictField(
        child=serializers.CharField(max_length=256, allow_blank=True), allow_empty=True,
        help_text="Where it was exported: python, django, database vendor, platform.")
    export_mode = serializers.ChoiceField(EXPORT_MODES)
    redaction_mode = serializers.CharField(max_length=16)
    trace_id = serializers.RegexField(r"^[0-9a-f]{32}$", allow_null=True)
    run_id = serializers.CharField(max_length=40, allow_null=True)
    counts = CountsSerializer()
    files = serializers.DictField(child=FileEntrySerializer())

    def validate_format_version(self, value: int) -> int:
        if value not in READABLE_VERSIONS:
            raise serializers.ValidationError(
                f"bundle format version {value} is not readable by this server "
                f"(reads {', '.join(map(str, sorted(READABLE_VERSIONS)))})")
        return value

    def validate_files(self, value: dict) -> dict:
        for name in value:
            if name == MANIFEST or not is_entry_name(name):
                raise serializers.ValidationError(f"unexpected file name {name!r}")
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs["trace_id"] is None and attrs["run_id"] is None:
            raise serializers.ValidationError("a bundle holds a trace, a run, or both")
        files = attrs["files"]
        if attrs["trace_id"] is not None and SPANS not in files:
            raise serializers.ValidationError(f"a bundle with a trace lists {SPANS}")
        if attrs["run_id"] is not None and not {RUN, RUN_EVENTS} <= set(files):
            raise serializers.ValidationError(f"a bundle with a run lists {RUN} and {RUN_EVENTS}")
        payloads = sum(1 for name in files if name.startswith(PAYLOADS_DIR))
        if payloads != attrs["counts"]["payloads"]:
            raise serializers.ValidationError("counts.payloads does not match the files listed")
        return attrs
