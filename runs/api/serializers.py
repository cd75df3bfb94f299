"""Input validation and output shapes of the runs API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from runs import lifecycle as lc
from runs import queue_selectors
from runs.models import RUN_EVENT_FIELDS, EventLevel, Run, RunEvent, RunState, Step, Worker
from runs.selectors import EVENT_PAGE_DEFAULT, EVENT_PAGE_MAX
from runs.services import KIND_RE
from tracefoundry.api.inputs import (
    MAX_BIGINT,
    MAX_INT,
    DateTimeField,
    JSONInputSerializer,
    OptionalIdField,
)


class RunSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    progress = serializers.SerializerMethodField()
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    trace_id = OptionalIdField(help_text="The trace of this run, or null.")
    imported_from = OptionalIdField(help_text=(
        "The id of the run this one was imported from (a bundle), or null."))
    links = serializers.SerializerMethodField()
    waiting = serializers.SerializerMethodField(help_text=(
        "Queued runs only: `no worker online serves kind X` while no online worker claims "
        "the run's kind (for its project); null otherwise."))

    class Meta:
        model = Run
        fields = [
            "id", "project", "kind", "name", "input", "state", "idempotency_key", "attempt",
            "max_attempts", "run_after", "claimed_by", "claimed_at", "heartbeat_at",
            "cancel_requested_at", "started_at", "finished_at", "created_at", "updated_at",
            "duration_ms", "output", "output_ref", "error", "correlation_id", "trace_id",
            "imported_from", "steps_total", "steps_completed", "event_count", "error_count",
            "dropped_event_count", "latest_event_at", "progress", "links", "waiting",
        ]
        read_only_fields = fields

    def get_progress(self, run: Run) -> float | None:
        if not run.steps_total:
            return None
        return round(run.steps_completed / run.steps_total, 4)

    def get_links(self, run: Run) -> dict[str, str]:
        base = f"/api/v1/runs/{run.id}"
        return {"self": base, "events": f"{base}/events", "steps": f"{base}/steps"}

    def get_waiting(self, run: Run) -> str | None:
        if run.state != RunState.QUEUED:
            return None
        # Read once per response (the root serializer's context), however many runs it lists.
        context = self.context
        if "online_kinds" not in context:
            context["online_kinds"] = queue_selectors.workers_online_kinds()
        return queue_selectors.run_waiting(run=run, online=context["online_kinds"])


class RunListSerializer(RunSerializer):
    """The list omits the input and error bodies, which can be large."""

    class Meta(RunSerializer.Meta):
        fields = [f for f in RunSerializer.Meta.fields if f not in ("input", "error")]
        read_only_fields = fields


class WorkerSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True, help_text=(
        "External workers serve their key's project only; null: every project."))
    kinds = serializers.ListField(child=serializers.CharField(), allow_null=True, help_text=(
        "The kinds it claims; null: every kind."))
    source = serializers.CharField(help_text=(
        "`process`: a `manage.py worker`; `api`: an external worker (`POST /runs/claim`)."))
    online = serializers.BooleanField(help_text=(
        "Its last heartbeat is younger than the stall timeout."))

    class Meta:
        model = Worker
        fields = ["worker_id", "source", "host", "pid", "kinds", "concurrency", "project",
                  "started_at", "heartbeat_at", "online"]
        read_only_fields = fields

    def to_representation(self, worker: Worker) -> dict:
        data = super().to_representation(worker)
        if worker.every_kind:
            data["kinds"] = None
        return data


IDEMPOTENCY_KEY_MAX = 255


class IdempotencyHeaderSerializer(serializers.Serializer):
    """The `Idempotency-Key` header, held to the body field's rules."""

    key = serializers.CharField(max_length=IDEMPOTENCY_KEY_MAX, allow_blank=True)


class RunEnqueueSerializer(JSONInputSerializer):
    kind = serializers.RegexField(KIND_RE.pattern, max_length=128)
    input = serializers.JSONField(required=False, default=dict, allow_null=True,
                                  help_text="Any JSON value; null is stored as {}.")
    name = serializers.CharField(max_length=256, required=False, default="", allow_blank=True)
    project = serializers.SlugField(required=False, help_text="Project slug (default: `default`, "
                                    "or the API key's project).")
    idempotency_key = serializers.CharField(
        max_length=IDEMPOTENCY_KEY_MAX, required=False,
        help_text="Same as the `Idempotency-Key` header.")
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False)
    run_after = DateTimeField(required=False)
    correlation_id = serializers.CharField(max_length=64, required=False, default="")
    trace_id = serializers.RegexField(r"^[0-9a-f]{32}$", required=False, default="")


class RunStartSerializer(JSONInputSerializer):
    worker_id = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


@extend_schema_field({"type": "string", "pattern": "^(sha256:[0-9a-fA-F]{64})?$"})
class PayloadRefField(serializers.CharField):
    """A payload reference: its format is in the schema, and checked (with the project's right to
    the blob) by the service, whose message names the field."""


class RunSucceedSerializer(JSONInputSerializer):
    output = serializers.JSONField(required=False, allow_null=True, help_text=(
        "Stored as a payload blob; null (or leaving it out) stores none."))
    output_ref = PayloadRefField(required=False, default="", allow_blank=True, help_text=(
        "Instead of `output`: `sha256:<64 hex>` of a payload this run's project already refers "
        "to (400 otherwise)."))
    worker_id = serializers.CharField(max_length=200, required=False, help_text=(
        "The worker holding the run; required with a `worker` key (409 if it does not hold it)."))


class RunFailSerializer(JSONInputSerializer):
    error = serializers.JSONField(required=False, default="", allow_null=True,
                                  help_text="Message (and stack); null is no message.")

    def validate_error(self, value):
        return "" if value is None else value
    retryable = serializers.BooleanField(required=False, default=False)
    worker_id = serializers.CharField(max_length=200, required=False, help_text=(
        "The worker holding the run; required with a `worker` key (409 if it does not hold it)."))


class RunClaimSerializer(JSONInputSerializer):
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


class RunHeartbeatSerializer(JSONInputSerializer):
    worker_id = serializers.CharField(max_length=200)


class RunHeartbeatResultSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    state = serializers.CharField()
    heartbeat_at = serializers.DateTimeField()
    cancel_requested = serializers.BooleanField(help_text=(
        "Stop the job, then acknowledge with `POST /runs/{id}/cancel` and your `worker_id`."))


class RunCancelSerializer(JSONInputSerializer):
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


class StepCreateSerializer(JSONInputSerializer):
    name = serializers.CharField(max_length=256)
    node_ref = serializers.CharField(max_length=256, required=False, default="", allow_blank=True)
    position = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False)


class StepFailSerializer(JSONInputSerializer):
    error = serializers.JSONField(required=False, default="", allow_null=True,
                                  help_text="Why the step failed (only `fail` stores it).")

    def validate_error(self, value):
        return "" if value is None else value


class EventSerializer(serializers.ModelSerializer):
    """Documents the event shape; responses are built by runs.wire.event_dict."""

    run_id = serializers.CharField()
    step_id = serializers.CharField(allow_null=True)

    class Meta:
        model = RunEvent
        fields = list(RUN_EVENT_FIELDS)


EVENT_BATCH_MAX = 1000


class EventInSerializer(JSONInputSerializer):
    """One event as sent by agents; POST a list of these for a batch (max 1,000). Documents
    what runs.envelope checks (it validates the events itself, all or nothing); no other
    fields are accepted."""

    type = serializers.RegexField(
        rf"^(?!{'|'.join(p.replace('.', r'[.]') for p in lc.RESERVED_PREFIXES)})"
        + lc.CUSTOM_TYPE_RE.pattern.lstrip("^"),
        help_text="`run.*` and `step.*` are written by the server. A `log` event needs a "
        "string `payload.text`; `progress` numbers must be >= 0.")
    level = serializers.ChoiceField(EventLevel.values, required=False)
    source = serializers.RegexField(lc.SOURCE_RE.pattern, required=False)
    payload = serializers.JSONField(required=False)
    step_id = serializers.CharField(required=False, max_length=40, allow_blank=True,
                                    allow_null=True)
    correlation_id = serializers.CharField(required=False, max_length=64, allow_blank=True,
                                           allow_null=True)
    causation_id = serializers.CharField(required=False, max_length=64, allow_blank=True,
                                         allow_null=True)
    worker_id = serializers.CharField(required=False, max_length=200, allow_blank=True,
                                      allow_null=True)


class EventPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    next_after_id = serializers.IntegerField()


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    dropped = serializers.IntegerField()
    events = serializers.ListField(child=serializers.DictField(), help_text=(
        "`id`, `event_id`, `seq` and `truncated` of each stored event, in order."))


_LEVEL = f"(?:{'|'.join(EventLevel.values)})"
LEVEL_LIST_RE = rf"^{_LEVEL}(?:,{_LEVEL})*$"


class EventQuerySerializer(serializers.Serializer):
    after_id = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, required=False,
                                        default=0, help_text="Return events with id > after_id.")
    limit = serializers.IntegerField(
        min_value=1, max_value=EVENT_PAGE_MAX, required=False, default=EVENT_PAGE_DEFAULT,
        help_text=f"Default {EVENT_PAGE_DEFAULT}, max {EVENT_PAGE_MAX}.")
    types = serializers.CharField(required=False, default="", allow_blank=True,
                                  help_text="Comma-separated event types.")
    level = serializers.RegexField(
        LEVEL_LIST_RE, required=False, default="", allow_blank=True,
        error_messages={"invalid": f"a comma-separated list of {', '.join(EventLevel.values)}"},
        help_text=f"Comma-separated levels: {', '.join(EventLevel.values)}.")
    step_id = serializers.CharField(required=False, default="", allow_blank=True,
                                    help_text="Only the events of this step.")
