"""Input validation and output shapes of the runs API."""

from __future__ import annotations

from rest_framework import serializers

from runs.models import Run, RunEvent, Step
from runs.selectors import EVENT_PAGE_DEFAULT, EVENT_PAGE_MAX


class RunSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    progress = serializers.SerializerMethodField()
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    links = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id", "project", "kind", "name", "input", "state", "idempotency_key", "attempt",
            "max_attempts", "run_after", "claimed_by", "claimed_at", "heartbeat_at",
            "cancel_requested_at", "started_at", "finished_at", "created_at", "updated_at",
            "duration_ms", "output_ref", "error", "correlation_id", "trace_id", "steps_total",
            "steps_completed", "event_count", "error_count", "dropped_event_count",
            "latest_event_at", "progress", "links",
        ]
        read_only_fields = fields

    def get_progress(self, run: Run) -> float | None:
        if not run.steps_total:
            return None
        return round(run.steps_completed / run.steps_total, 4)

    def get_links(self, run: Run) -> dict[str, str]:
        base = f"/api/v1/runs/{run.id}"
        return {"self": base, "events": f"{base}/events", "steps": f"{base}/steps"}


class RunListSerializer(RunSerializer):
    """The list omits the input and error bodies, which can be large."""

    class Meta(RunSerializer.Meta):
        fields = [f for f in RunSerializer.Meta.fields if f not in ("input", "error")]
        read_only_fields = fields


class RunEnqueueSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=128)
    input = serializers.JSONField(required=False, default=dict)
    name = serializers.CharField(max_length=256, required=False, default="", allow_blank=True)
    project = serializers.SlugField(required=False, help_text="Project slug (default: `default`, "
                                    "or the API key's project).")
    idempotency_key = serializers.CharField(max_length=255, required=False, help_text=(
        "Same as the `Idempotency-Key` header."))
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False)
    run_after = serializers.DateTimeField(required=False)
    correlation_id = serializers.CharField(max_length=64, required=False, default="")
    trace_id = serializers.RegexField(r"^[0-9a-f]{32}$", required=False, default="")


class RunStartSerializer(serializers.Serializer):
    worker_id = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class RunSucceedSerializer(serializers.Serializer):
    output = serializers.JSONField(required=False, help_text="Stored as a payload blob.")
    output_ref = serializers.CharField(max_length=512, required=False, default="", help_text=(
        "Instead of `output`: `sha256:<64 hex>` of a payload this run's project already refers "
        "to (400 otherwise)."))
    worker_id = serializers.CharField(max_length=200, required=False, help_text=(
        "The worker holding the run; required with a `worker` key (409 if it does not hold it)."))


class RunFailSerializer(serializers.Serializer):
    error = serializers.JSONField(required=False, default="", help_text="Message (and stack).")
    retryable = serializers.BooleanField(required=False, default=False)
    worker_id = serializers.CharField(max_length=200, required=False, help_text=(
        "The worker holding the run; required with a `worker` key (409 if it does not hold it)."))


class RunClaimSerializer(serializers.Serializer):
    worker_id = serializers.CharField(max_length=200, help_text=(
        "Who claims: the id this worker uses in heartbeat, succeed and fail."))
    kinds = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, default=list,
        max_length=100, help_text="Only runs of these kinds (default: any kind).")
    limit = serializers.IntegerField(min_value=1, max_value=100, required=False, default=1,
                                     help_text="Claim up to this many runs at once.")


class RunClaimResultSerializer(serializers.Serializer):
    runs = RunSerializer(many=True, help_text=(
        "The claimed runs, now `running` and held by `worker_id` (oldest first; empty when "
        "nothing is due)."))


class RunHeartbeatSerializer(serializers.Serializer):
    worker_id = serializers.CharField(max_length=200)


class RunHeartbeatResultSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    state = serializers.CharField()
    heartbeat_at = serializers.DateTimeField()
    cancel_requested = serializers.BooleanField(help_text=(
        "Stop the job, then acknowledge with `POST /runs/{id}/cancel` and your `worker_id`."))


class RunCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)
    worker_id = serializers.CharField(max_length=200, required=False)
    force = serializers.BooleanField(required=False, default=False)


class StepSerializer(serializers.ModelSerializer):
    run_id = serializers.CharField(read_only=True)

    class Meta:
        model = Step
        fields = ["id", "run_id", "name", "node_ref", "position", "state", "started_at",
                  "finished_at", "error"]
        read_only_fields = fields


class StepCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=256)
    node_ref = serializers.CharField(max_length=256, required=False, default="", allow_blank=True)
    position = serializers.IntegerField(min_value=0, required=False)


class StepFailSerializer(serializers.Serializer):
    error = serializers.JSONField(required=False, default="")


class EventSerializer(serializers.ModelSerializer):
    """Documents the event shape; responses are built by runs.wire.event_dict."""

    run_id = serializers.CharField()
    step_id = serializers.CharField(allow_null=True)

    class Meta:
        model = RunEvent
        fields = ["id", "event_id", "run_id", "step_id", "seq", "type", "level", "source",
                  "created_at", "correlation_id", "causation_id", "payload", "payload_bytes",
                  "truncated", "late"]


class EventInSerializer(serializers.Serializer):
    """One event as sent by agents; POST a list of these for a batch (max 1,000)."""

    type = serializers.RegexField(r"^[a-z][a-z0-9_.]{0,63}$")
    level = serializers.ChoiceField(["debug", "info", "warn", "error"], required=False)
    source = serializers.CharField(required=False, max_length=32)
    payload = serializers.JSONField(required=False)
    step_id = serializers.CharField(required=False, max_length=40)
    correlation_id = serializers.CharField(required=False, max_length=64)
    causation_id = serializers.CharField(required=False, max_length=64)
    worker_id = serializers.CharField(required=False, max_length=200)


class EventPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    next_after_id = serializers.IntegerField()


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    dropped = serializers.IntegerField()
    events = serializers.ListField(child=serializers.DictField(), help_text=(
        "`id`, `event_id`, `seq` and `truncated` of each stored event, in order."))


class EventQuerySerializer(serializers.Serializer):
    after_id = serializers.IntegerField(min_value=0, required=False, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=EVENT_PAGE_MAX,
                                     required=False, default=EVENT_PAGE_DEFAULT)
    types = serializers.CharField(required=False, default="", allow_blank=True)
    level = serializers.CharField(required=False, default="", allow_blank=True)
    step_id = serializers.CharField(required=False, default="", allow_blank=True)

    def validate_level(self, value: str) -> str:
        bad = [v for v in value.split(",") if v and v not in ("debug", "info", "warn", "error")]
        if bad:
            raise serializers.ValidationError(f"unknown level(s): {', '.join(bad)}")
        return value
