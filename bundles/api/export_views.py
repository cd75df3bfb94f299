"""``GET /api/v1/traces/{trace_id}/export`` and ``GET /api/v1/runs/{id}/export``: a bundle,
streamed as a zip (``Content-Disposition: attachment``).

Thin: check the query, call ``bundles.exports.trace_export``/``run_export`` (which decide the
mode a caller may have, and read everything into a spool before the first byte is sent, so a
missing trace or a refused mode is still a JSON 4xx), then stream the spool. The response is
``bundles.streaming.zip_response`` (asynchronous chunks under ASGI).
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers, serializers
from rest_framework.views import APIView

from bundles import format as fmt
from bundles.exports import PreparedBundle, run_export, trace_export
from bundles.streaming import ZIP, zip_response
from tracefoundry.api.permissions import access_for, allows
from tracefoundry.api.schema import common_errors, validated
from tracefoundry.roles import Cap


class ExportQuerySerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        fmt.EXPORT_MODES, required=False,
        help_text="`full` (engineers and admins: what the server stored, payload blobs "
        "included) or `strict` (anyone who may read: re-redacted with the strict policy, no "
        "payload blobs). Default: the most the caller may have. `full` without the right is "
        "a 403.")
    payloads = serializers.ChoiceField(
        ["0", "1"], required=False, default="1",
        help_text="`0`: leave the payload blobs out of a full export (the references stay).")


class ZipRenderer(renderers.BaseRenderer):
    """Lets a client ask for ``Accept: application/zip``; the body is the streamed bundle.
    Errors are rendered as JSON whatever was asked for (``finalize_response``)."""

    media_type = ZIP
    format = "zip"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class BundleExportView(APIView):
    permission_classes = [allows(Cap.READ)]
    renderer_classes = [*APIView.renderer_classes, ZipRenderer]

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(getattr(request, "accepted_renderer", None), ZipRenderer) \
                and not isinstance(response, StreamingHttpResponse):
            request.accepted_renderer = self.renderer_classes[0]()
            request.accepted_media_type = request.accepted_renderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    def query(self, request) -> dict:
        query = validated(ExportQuerySerializer, request.query_params.dict())
        return {"mode": query.get("mode"), "payloads": query["payloads"] == "1"}


def streamed(request, bundle: PreparedBundle):
    return zip_response(request._request, bundle.chunks(), filename=bundle.filename,
                        mode=bundle.mode, on_close=bundle.close)


_ERRORS = {
    **common_errors("No such trace or run (or not in the key's project)"),
    403: OpenApiResponse(description="Not allowed to read, or `mode=full` without the right "
                                     "to payload contents (viewers, service keys)"),
}
_ZIP_200 = {(200, ZIP): OpenApiResponse(OpenApiTypes.BINARY, description=(
    "The bundle (zip): `manifest.json`, `README.md`, `spans.otlp.json`, `run.json`, "
    "`run_events.jsonl`, `payloads/<sha256>`. Header `X-TraceFoundry-Export-Mode` says the "
    "mode given."))}


class TraceExportView(BundleExportView):
    @extend_schema(parameters=[ExportQuerySerializer], responses={**_ZIP_200, **_ERRORS},
                   operation_id="traces_export", description=(
                       "Export a trace, with its run when it has one, as a bundle (zip)."))
    def get(self, request, trace_id: str):
        bundle = trace_export(access=access_for(request), trace_id=trace_id,
                              **self.query(request))
        return streamed(request, bundle)


class RunExportView(BundleExportView):
    @extend_schema(parameters=[ExportQuerySerializer], responses={**_ZIP_200, **_ERRORS},
                   operation_id="runs_export", description=(
                       "Export a run, with its trace when it has one, as a bundle (zip)."))
    def get(self, request, run_id: str):
        bundle = run_export(access=access_for(request), run_id=run_id, **self.query(request))
        return streamed(request, bundle)
