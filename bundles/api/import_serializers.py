"""Inputs and output shapes of ``POST /api/v1/bundles/import`` and ``/bundles/dry-replay``.

The outputs are plain dicts built by the services (``ImportReport.as_dict``,
``bundle_dry_replay``); these serializers document them in the OpenAPI schema.
"""

from __future__ import annotations

from rest_framework import serializers

from bundles import format as fmt

SLUG_PATTERN = r"^[-a-zA-Z0-9_]{1,64}$"


class BundleUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=True, use_url=False,
        help_text="The bundle: a zip written by an export (`manifest.json`, `spans.otlp.json`, "
        "`run.json`, `run_events.jsonl`, `payloads/<sha256>`).")


class ImportQuerySerializer(serializers.Serializer):
    project = serializers.RegexField(
        SLUG_PATTERN, required=False,
        help_text="The project to import into (users; default `default`). An API key imports "
        "into its own project; naming another one is a 403.")


class ImportCountsSerializer(serializers.Serializer):
    spans = serializers.IntegerField(help_text="Spans ingested.")
    run_events = serializers.IntegerField(
        help_text="Events stored for the run (with a closing `run.canceled` when it had not "
        "finished).")
    payloads = serializers.IntegerField(help_text="Payload blobs of the bundle restored here.")
    payloads_skipped = serializers.IntegerField(
        help_text="Payload blobs not restored (not UTF-8 text: the redaction cannot vouch for "
        "them).")


class ImportReportSerializer(serializers.Serializer):
    project = serializers.CharField()
    trace_id = serializers.CharField(allow_null=True, help_text="The imported trace (same id).")
    run_id = serializers.CharField(
        allow_null=True, help_text="The run the bundle's run was imported as (a new id), or "
        "the earlier import of it.")
    original_run_id = serializers.CharField(
        allow_null=True, help_text="The run's id where it was exported (`imported_from`).")
    already_imported = serializers.BooleanField(
        help_text="Nothing was stored: the project holds everything in the bundle already.")
    trace_imported = serializers.BooleanField()
    run_imported = serializers.BooleanField()
    run_closed = serializers.BooleanField(
        help_text="The run had not finished when exported: closed here as canceled.")
    source = serializers.CharField(help_text=f"`{fmt.SOURCE_TAG}`: the trace's `source`.")
    environment = serializers.CharField(
        help_text=f"`{fmt.ENVIRONMENT_TAG}`: the trace's environment.")
    counts = ImportCountsSerializer()
    export_mode = serializers.ChoiceField(fmt.EXPORT_MODES)
    redaction_mode = serializers.CharField(
        help_text="The bundle's; the import was redacted under the project's own policy.")


class FindingSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text=(
        "hash_mismatch, size_mismatch, missing_file, unlisted_file, corrupt_payload, "
        "missing_payloads, unreadable_spans, invalid_spans, foreign_spans, count_mismatch, "
        "duplicate_spans, orphan_spans, cycle, unreadable_run, event_sequence."))
    entry = serializers.CharField(help_text="The bundle entry it is about.")
    message = serializers.CharField()
    expected = serializers.CharField(allow_null=True)
    actual = serializers.CharField(allow_null=True)


class ManifestSummarySerializer(serializers.Serializer):
    format_version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    product_version = serializers.CharField()
    git_commit = serializers.CharField(allow_null=True)
    export_mode = serializers.CharField()
    redaction_mode = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField())


class SpanBriefSerializer(serializers.Serializer):
    span_id = serializers.CharField()
    name = serializers.CharField()
    parent_span_id = serializers.CharField(allow_null=True)


class TreeSerializer(serializers.Serializer):
    spans = serializers.IntegerField()
    roots = SpanBriefSerializer(many=True, help_text="Spans without a parent (first 100).")
    root_count = serializers.IntegerField()
    orphans = SpanBriefSerializer(
        many=True, help_text="Spans whose parent the bundle does not hold (first 100).")
    orphan_count = serializers.IntegerField()
    cycles = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Span ids whose parent links loop, one list per cycle.")
    unreachable = serializers.IntegerField(
        help_text="Spans reachable from no root or orphan (in or under a cycle).")
    depth = serializers.IntegerField(help_text="Levels of the deepest branch (a root alone: 1).")
    duplicates = serializers.ListField(child=serializers.CharField())


class PayloadSummarySerializer(serializers.Serializer):
    in_bundle = serializers.IntegerField()
    referenced = serializers.IntegerField()
    missing = serializers.ListField(
        child=serializers.CharField(),
        help_text="SHA-256 of blobs referred to but not in the bundle (first 100).")
    missing_count = serializers.IntegerField()
    corrupt = serializers.ListField(child=serializers.CharField())
    left_out_by_export = serializers.BooleanField(
        help_text="The bundle holds no blobs at all (a strict export, or `payloads=0`): "
        "missing ones are not findings.")
    unreferenced = serializers.IntegerField()


class CallSerializer(serializers.Serializer):
    span_id = serializers.CharField()
    name = serializers.CharField()
    type = serializers.ChoiceField(["llm", "tool"])
    model = serializers.CharField(allow_null=True)
    tool = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    start_offset_ms = serializers.FloatField()
    duration_ms = serializers.FloatField()
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)


class RunSummarySerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    kind = serializers.CharField(allow_null=True)
    state = serializers.CharField(allow_null=True)
    events = serializers.IntegerField()
    errors = serializers.IntegerField()
    event_types = serializers.DictField(child=serializers.IntegerField())
    seq_gaps = serializers.ListField(child=serializers.IntegerField())


class DryReplayReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="No findings.")
    trace_id = serializers.CharField(allow_null=True)
    run_id = serializers.CharField(allow_null=True)
    manifest = ManifestSummarySerializer()
    findings = FindingSerializer(many=True)
    hash_mismatches = FindingSerializer(many=True)
    tree = TreeSerializer()
    span_types = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Spans per type, as the ingest classifies them: llm, tool, agent, chain, "
        "retriever, other.")
    payloads = PayloadSummarySerializer()
    calls = CallSerializer(many=True, help_text="The recorded LLM and tool calls, by start.")
    run = RunSummarySerializer(allow_null=True)
