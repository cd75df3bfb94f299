"""HTTP views of the runs API: translate requests into service and selector calls, nothing more."""

from __future__ import annotations

from django.db.models import prefetch_related_objects
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from runs import envelope, queue_selectors, selectors, services, wire
from runs.api import serializers as s
from runs.api.filters import RunFilter
from runs.models import Run
from tracefoundry.api.pagination import ListCursorPagination
from tracefoundry.api.permissions import access_for, allows
from tracefoundry.api.schema import common_errors, error_response, validated
from tracefoundry.roles import Cap
from tracefoundry.throttling import CancelThrottle, EnqueueThrottle

ERRORS = common_errors("No such run (or not visible to this key)")
CONFLICT = {409: error_response("Illegal transition; `details.state` is current")}


class RunScopedView(APIView):
    """Base of the views under /runs/{run_id}/: finds the run the caller may see (or 404)."""

    def get_run(self, run_id: str) -> Run:
        return selectors.run_get(run_id=run_id, access=access_for(self.request))


class RunOrdering(OrderingFilter):
    """DRF's ordering, except that an unknown or empty term is a 400 (DRF drops it silently)."""

    ordering_fields = ["created_at", "updated_at", "event_count", "error_count"]
    ordering_description = (
        "Sort by created_at (default, newest first), updated_at, event_count or error_count; "
        "prefix with - for descending; several, comma-separated."
    )

    def get_ordering(self, request, queryset, view):
        raw = request.query_params.get(self.ordering_param)
        if raw is None:
            return self.get_default_ordering(view)
        terms = raw.split(",")
        if not all(term.removeprefix("-") in self.ordering_fields for term in terms):
            raise ValidationError({self.ordering_param: [
                f"one or more of {', '.join(self.ordering_fields)}, each optionally prefixed "
                "with -, comma-separated"]})
        return terms

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        term = f"-?(?:{'|'.join(self.ordering_fields)})"
        for parameter in parameters:
            parameter["schema"] = {"type": "string", "pattern": f"^{term}(?:,{term})*$"}
        return parameters


class RunListCreateView(generics.GenericAPIView):
    """`GET` lists runs (filters, sorting, cursor pagination); `POST` enqueues a run."""

    serializer_class = s.RunListSerializer
    pagination_class = ListCursorPagination
    filterset_class = RunFilter
    ordering = "-created_at"

    filter_backends = [DjangoFilterBackend, RunOrdering]

    def get_permissions(self):
        return [allows(Cap.WRITE if self.request.method == "POST" else Cap.READ)()]

    def get_throttles(self):
        return [EnqueueThrottle()] if self.request.method == "POST" else []

    def get_queryset(self):
        return selectors.run_list(access=access_for(self.request))

    @extend_schema(responses={200: s.RunListSerializer(many=True), **ERRORS},
                   operation_id="runs_list")
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.RunListSerializer(page, many=True).data)

    @extend_schema(
        request=s.RunEnqueueSerializer,
        parameters=[OpenApiParameter(
            "Idempotency-Key", {"type": "string", "maxLength": s.IDEMPOTENCY_KEY_MAX},
            OpenApiParameter.HEADER, description="Same as the body's `idempotency_key`.")],
        responses={201: s.RunSerializer, 200: s.RunSerializer, **ERRORS,
                   409: error_response("Idempotency-Key reused with another body"),
                   429: error_response("Throttled; see Retry-After")},
        operation_id="runs_enqueue",
    )
    def post(self, request):
        data = validated(s.RunEnqueueSerializer, request.data)
        header = validated(s.IdempotencyHeaderSerializer,
                           {"key": request.headers.get("Idempotency-Key", "")})["key"]
        project = selectors.project_for_enqueue(access=access_for(request),
                                                slug=data.get("project"))
        run, created = services.run_enqueue(
            project=project,
            kind=data["kind"],
            input=data.get("input"),
            name=data.get("name", ""),
            idempotency_key=header or data.get("idempotency_key"),
            max_attempts=data.get("max_attempts"),
            run_after=data.get("run_after"),
            correlation_id=data.get("correlation_id", ""),
            trace_id=data.get("trace_id", ""),
            source="api",
        )
        return Response(
            s.RunSerializer(run).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": f"/api/v1/runs/{run.id}"},
        )


class RunDetailView(RunScopedView):
    permission_classes = [allows(Cap.READ)]

    @extend_schema(responses={200: s.RunSerializer, **ERRORS}, operation_id="runs_retrieve")
    def get(self, request, run_id: str):
        return Response(s.RunSerializer(self.get_run(run_id)).data)


class RunStartView(RunScopedView):
    permission_classes = [allows(Cap.LIFECYCLE)]

    @extend_schema(request=s.RunStartSerializer, responses={200: s.RunSerializer, **ERRORS,
                                                            **CONFLICT})
    def post(self, request, run_id: str):
        data = validated(s.RunStartSerializer, request.data)
        run = services.run_start(run_id=self.get_run(run_id).id, worker_id=data["worker_id"])
        return Response(s.RunSerializer(run).data)


def _worker_only(request) -> bool:
    """A key that may drive runs only as a worker (no `runs:write`): it acts on the runs it
    holds, and must say which worker it is."""
    return not access_for(request).can(Cap.WRITE)


class RunSucceedView(RunScopedView):
    permission_classes = [allows(Cap.LIFECYCLE)]

    @extend_schema(request=s.RunSucceedSerializer, responses={200: s.RunSerializer, **ERRORS,
                                                              **CONFLICT})
    def post(self, request, run_id: str):
        data = validated(s.RunSucceedSerializer, request.data)
        run = services.run_succeed(
            run_id=self.get_run(run_id).id, output=data.get("output"),
            output_ref=data.get("output_ref", ""), worker_id=data.get("worker_id"),
            require_holder=_worker_only(request),
        )
        return Response(s.RunSerializer(run).data)


class RunFailView(RunScopedView):
    permission_classes = [allows(Cap.LIFECYCLE)]

    @extend_schema(request=s.RunFailSerializer, responses={200: s.RunSerializer, **ERRORS,
                                                           **CONFLICT})
    def post(self, request, run_id: str):
        data = validated(s.RunFailSerializer, request.data)
        run = services.run_fail(
            run_id=self.get_run(run_id).id, error=data["error"], retryable=data["retryable"],
            worker_id=data.get("worker_id"), require_holder=_worker_only(request),
        )
        return Response(s.RunSerializer(run).data)


class CancelAllowed(BasePermission):
    """Engineers and `runs:write` keys cancel any run; a `worker` key only acknowledges the
    cancel request of a run it holds (it must send its `worker_id`)."""

    message = "your role or key scope does not allow this (write)"

    def has_permission(self, request, view) -> bool:
        if allows(Cap.WRITE)().has_permission(request, view):
            return True
        return (allows(Cap.WORKER)().has_permission(request, view)
                and isinstance(request.data, dict) and bool(request.data.get("worker_id")))


class RunCancelView(RunScopedView):
    permission_classes = [CancelAllowed]
    throttle_classes = [CancelThrottle]

    @extend_schema(
        request=s.RunCancelSerializer,
        responses={200: s.RunSerializer, 202: s.RunSerializer, **ERRORS, **CONFLICT},
        description=(
            "Queued runs are canceled at once (200). A running run is asked to stop (202, "
            "`cancel_requested_at` set); it is canceled when its worker cancels it again with "
            "its `worker_id`, or at once with `force`. A `worker` key may only do the former, "
            "for a run it holds (409 otherwise)."
        ),
    )
    def post(self, request, run_id: str):
        data = validated(s.RunCancelSerializer, request.data)
        run = services.run_cancel(
            run_id=self.get_run(run_id).id, reason=data["reason"],
            worker_id=data.get("worker_id"), force=data["force"],
            require_holder=_worker_only(request),
        )
        code = status.HTTP_200_OK if run.is_finished else status.HTTP_202_ACCEPTED
        return Response(s.RunSerializer(run).data, status=code)


class RunClaimView(APIView):
    """External workers claim queued runs (a key with the `worker` scope, its project only)."""

    permission_classes = [allows(Cap.WORKER)]

    @extend_schema(
        request=s.RunClaimSerializer,
        responses={200: s.RunClaimResultSerializer,
                   **{code: r for code, r in ERRORS.items() if code != 404}},
        operation_id="runs_claim",
        description=(
            "Atomically claims up to `limit` due queued runs (oldest first) for `worker_id`: "
            "each becomes `running` with `attempt` + 1 and a `run.started` event. No run is "
            "ever given to two workers. A claim also registers `worker_id` as online for "
            "`kinds` (every kind when empty) in `GET /workers`. Heartbeat each run "
            "(`POST /runs/{id}/heartbeat`) more often than the server's stall timeout, then "
            "`succeed` or `fail` it with the same `worker_id`."
        ),
    )
    def post(self, request):
        data = validated(s.RunClaimSerializer, request.data)
        runs = services.run_claim_external(
            worker_id=data["worker_id"], kinds=data["kinds"], limit=data["limit"],
            project_id=access_for(request).project_id,
        )
        prefetch_related_objects(runs, "project")
        return Response({"runs": s.RunSerializer(runs, many=True).data})


class RunHeartbeatView(RunScopedView):
    permission_classes = [allows(Cap.WORKER)]

    @extend_schema(
        request=s.RunHeartbeatSerializer,
        responses={200: s.RunHeartbeatResultSerializer, **ERRORS,
                   409: error_response("The run is not running or not held by `worker_id`; "
                                       "`details.state` is its state")},
        operation_id="run_heartbeat_batch",
        description=(
            "Tells the server the worker holding the run is alive. `cancel_requested: true`: "
            "stop the job and acknowledge with `POST /runs/{id}/cancel` and your `worker_id`."
        ),
    )
    def post(self, request, run_id: str):
        data = validated(s.RunHeartbeatSerializer, request.data)
        beat = services.run_heartbeat(run_id=run_id, worker_id=data["worker_id"],
                                   project_id=access_for(request).project_id)
        return Response({"run_id": beat.run_id, "state": "running",
                         "heartbeat_at": wire.iso(beat.heartbeat_at),
                         "cancel_requested": beat.cancel_requested})


class StepListCreateView(RunScopedView):
    def get_permissions(self):
        if self.request.method == "POST":
            return [allows(Cap.LIFECYCLE)()]
        return [allows(Cap.READ)()]

    @extend_schema(responses={200: s.StepSerializer(many=True), **ERRORS},
                   operation_id="runs_steps_list")
    def get(self, request, run_id: str):
        run = self.get_run(run_id)
        return Response(s.StepSerializer(selectors.step_list(run=run), many=True).data)

    @extend_schema(request=s.StepCreateSerializer,
                   responses={201: s.StepSerializer, **ERRORS, **CONFLICT},
                   operation_id="runs_steps_create")
    def post(self, request, run_id: str):
        data = validated(s.StepCreateSerializer, request.data)
        step = services.step_create(
            run_id=self.get_run(run_id).id, name=data["name"], node_ref=data["node_ref"],
            position=data.get("position"),
        )
        return Response(s.StepSerializer(step).data, status=status.HTTP_201_CREATED)


class StepActionView(RunScopedView):
    permission_classes = [allows(Cap.LIFECYCLE)]
    action = ""

    @extend_schema(request=s.StepFailSerializer, responses={200: s.StepSerializer, **ERRORS,
                                                            **CONFLICT})
    def post(self, request, run_id: str, step_id: str):
        error = validated(s.StepFailSerializer, request.data)["error"]
        step = services.step_transition(
            run_id=self.get_run(run_id).id, step_id=step_id, action=self.action, error=error
        )
        return Response(s.StepSerializer(step).data)


def _csv(request, name: str) -> list[str]:
    return [v.strip() for raw in request.query_params.getlist(name) for v in raw.split(",")
            if v.strip()]


class EventListCreateView(RunScopedView):
    """`GET` pages through a run's events in id order; `POST` appends one event or a batch."""

    def get_permissions(self):
        return [allows(Cap.APPEND if self.request.method == "POST" else Cap.READ)()]

    @extend_schema(
        parameters=[s.EventQuerySerializer],
        responses={200: s.EventPageSerializer, **ERRORS},
        operation_id="runs_events_list",
    )
    def get(self, request, run_id: str):
        query = validated(s.EventQuerySerializer, request.query_params)
        run = self.get_run(run_id)
        events, next_after_id = selectors.event_page(
            run=run, after_id=query["after_id"], limit=query["limit"],
            types=_csv(request, "types"), levels=_csv(request, "level"),
            step_id=query["step_id"] or None,
        )
        return Response({"events": [wire.event_dict(e) for e in events],
                         "next_after_id": next_after_id})

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="EventAppend",
            serializers=[s.EventInSerializer, s.EventInSerializer(many=True)],
            resource_type_field_name=None, many=False,
        ),
        description=(
            "Body: one event object (see EventIn) or a list of up to 1,000. One event answers "
            "the stored event; a batch answers `accepted`, `dropped` and the events' ids (202 "
            "when the run's event cap dropped some). A batch is "
            "validated as a whole: one bad event rejects it with 400 and nothing is stored. "
            "Strings over 8 KB are replaced by a preview and a payload reference; secrets are "
            "redacted before storage."
        ),
        responses={201: PolymorphicProxySerializer(
                       component_name="EventAppendResult",
                       serializers=[s.EventSerializer, s.EventBatchResultSerializer],
                       resource_type_field_name=None),
                   202: s.EventBatchResultSerializer, **ERRORS,
                   409: error_response("The run has finished"),
                   413: error_response("Body too large")},
        operation_id="runs_events_append",
    )
    def post(self, request, run_id: str):
        body = request.data
        single = isinstance(body, dict)
        raw_events = [body] if single else body
        access = access_for(request)
        origin = envelope.batch_origin(raw_events, from_api_key=access.api_key is not None)
        # The service checks the run exists (within a key's project) under its row lock, so
        # the hot path reads the run once.
        result = services.event_append_batch(
            run_id=run_id, events=raw_events, worker_id=origin.worker_id,
            project_id=access.project_id, source=origin.source, from_json=True,
        )
        if single and result.accepted:
            return Response(wire.event_dict(result.events[0]), status=status.HTTP_201_CREATED)
        return Response(
            {
                "accepted": result.accepted,
                "dropped": result.dropped,
                "events": [{"id": e.id, "event_id": str(e.event_id), "seq": e.seq,
                            "truncated": e.truncated} for e in result.events],
            },
            status=status.HTTP_202_ACCEPTED if result.dropped else status.HTTP_201_CREATED,
        )


class WorkerPagination(ListCursorPagination):
    ordering = ("-started_at", "-id")


class WorkerListView(generics.GenericAPIView):
    """`GET` lists the registered workers (viewer+, or a `runs:read` key: the server's own
    workers and the external workers of the key's project)."""

    serializer_class = s.WorkerSerializer
    pagination_class = WorkerPagination
    permission_classes = [allows(Cap.READ)]

    def get_queryset(self):
        return queue_selectors.worker_list(access=access_for(self.request))

    @extend_schema(
        responses={200: s.WorkerSerializer(many=True), **common_errors("Invalid cursor")},
        operation_id="workers_list",
        description=(
            "Workers that claim runs: `manage.py worker` processes (registered at start, "
            "removed on a clean exit) and external workers (registered by `POST /runs/claim`, "
            "kept online by their heartbeats). `online`: heard from within the stall timeout."
        ),
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.WorkerSerializer(page, many=True).data)
