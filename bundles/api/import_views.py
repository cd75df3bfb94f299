"""``POST /api/v1/bundles/import`` and ``POST /api/v1/bundles/dry-replay``: a bundle uploaded as
``multipart/form-data`` (field ``file``), for engineers and admins (keys: ``runs:write``).

Thin: validate the form, pick the project, call ``bundles.imports.bundle_import`` or
``bundles.replay.bundle_dry_replay``. A bad bundle is a 400 ``invalid_bundle`` naming the first
problem, with nothing stored.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from bundles.api import import_serializers as s
from bundles.imports import bundle_import
from bundles.replay import bundle_dry_replay
from runs.selectors import project_for_enqueue
from tracefoundry.api.exceptions import PayloadTooLarge
from tracefoundry.api.permissions import access_for, allows
from tracefoundry.api.schema import common_errors, error_response, validated
from tracefoundry.roles import Cap

_COMMON = common_errors("No such project")
ERRORS = {
    **_COMMON,
    400: error_response("Invalid input, or `invalid_bundle`: the bundle is refused (the "
                        "message names the first problem; nothing was stored)"),
    413: error_response("The upload is larger than TRACEFOUNDRY_MAX_REQUEST_BYTES"),
}
REPLAY_ERRORS = {code: response for code, response in ERRORS.items() if code != 404}


class LimitedMultiPartParser(MultiPartParser):
    """A multipart body over TRACEFOUNDRY_MAX_REQUEST_BYTES is a 413 before it is read."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        limit = settings.TRACEFOUNDRY_MAX_REQUEST_BYTES
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
        return super().parse(stream, media_type, parser_context)


class BundleUploadView(APIView):
    permission_classes = [allows(Cap.WRITE)]
    parser_classes = [LimitedMultiPartParser]


class BundleImportView(BundleUploadView):
    @extend_schema(
        request={"multipart/form-data": s.BundleUploadSerializer},
        parameters=[s.ImportQuerySerializer],
        responses={
            201: OpenApiResponse(s.ImportReportSerializer, description="Imported."),
            200: OpenApiResponse(s.ImportReportSerializer, description=(
                "Already imported: the project holds everything in the bundle; nothing was "
                "stored.")),
            **ERRORS,
            409: error_response("The trace id belongs to another project on this server"),
        },
        operation_id="bundles_import",
        description=(
            "Import a bundle into a project: the trace through the OTLP ingest (redacted under "
            "the project's policy; `source=bundle_import`, environment `offline`), the run "
            "under a new id recording the original one, its events in order. Idempotent."
        ),
    )
    def post(self, request):
        upload = validated(s.BundleUploadSerializer, request.data)
        query = validated(s.ImportQuerySerializer, request.query_params)
        project = project_for_enqueue(access=access_for(request), slug=query.get("project"))
        report = bundle_import(project=project, file=upload["file"])
        code = status.HTTP_200_OK if report.already_imported else status.HTTP_201_CREATED
        return Response(report.as_dict(), status=code)


class BundleDryReplayView(BundleUploadView):
    @extend_schema(
        request={"multipart/form-data": s.BundleUploadSerializer},
        responses={200: s.DryReplayReportSerializer, **REPLAY_ERRORS},
        operation_id="bundles_dry_replay",
        description=(
            "Rebuild the span tree from the bundle alone and report what is wrong with it "
            "(hash mismatches, corrupt or missing payloads, orphans, cycles) and the recorded "
            "LLM/tool calls. Nothing is stored. An archive that is unsafe to read is still a "
            "400 `invalid_bundle`."
        ),
    )
    def post(self, request):
        upload = validated(s.BundleUploadSerializer, request.data)
        return Response(bundle_dry_replay(file=upload["file"]))
