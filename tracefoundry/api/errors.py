"""One JSON error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

DRF exceptions and the run ledger's domain errors go through ``exception_handler``; anything
Django answers itself on an API path (unknown URL, body too large, an unexpected exception) is
rewritten by ``ApiErrorMiddleware``, in DEBUG too, so API clients never get an HTML page. A view
that could not reach the database answers 503 with ``Retry-After`` on every path, never 500.
"""

from __future__ import annotations

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django import db
from django.http import HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from tracefoundry import errors as ledger

log = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/otlp/")

# What a client should wait before retrying when the database could not serve its request.
RETRY_AFTER_SECONDS = 2
# The database is down, restarting, unreachable, out of pooled connections, or it broke off
# the statement (a deadlock, a cancelled query): the request was not served, and a retry may be.
# A 500 would tell an OTLP exporter to drop the batch; a 503 with Retry-After tells it to retry.
DEPENDENCY_ERRORS = (db.OperationalError, db.InterfaceError)


def dependency_unavailable(request) -> HttpResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if not request.path.startswith(API_PREFIXES):
        return HttpResponse("Service temporarily unavailable; retry shortly.\n", status=503,
                            content_type="text/plain; charset=utf-8", headers=headers)
    return JsonResponse(
        error_body("unavailable", "The database is unavailable; retry shortly.",
                   {"retry_after": RETRY_AFTER_SECONDS}),
        status=503, headers=headers)


_LEDGER_STATUS = {
    ledger.InvalidInput: status.HTTP_400_BAD_REQUEST,
    ledger.Forbidden: status.HTTP_403_FORBIDDEN,
    ledger.NotFound: status.HTTP_404_NOT_FOUND,
    ledger.Conflict: status.HTTP_409_CONFLICT,
}


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def domain_error_status(exc: ledger.DomainError) -> int:
    """The HTTP status of a service's DomainError (the in-process SDK transport answers the
    same)."""
    for cls, code in _LEDGER_STATUS.items():
        if isinstance(exc, cls):
            return code
    return status.HTTP_400_BAD_REQUEST


def _flatten_message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _flatten_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_flatten_message(value)}"
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, ledger.DomainError):
        return Response(error_body(exc.code, exc.message, exc.details),
                        status=domain_error_status(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        code, message, details = "invalid", "Invalid input: " + _flatten_message(exc.detail), {
            "fields": exc.detail
        }
    else:
        detail = getattr(exc, "detail", "")
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        message, details = str(detail), {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details = {"retry_after": int(exc.wait) + 1}
        elif isinstance(exc, exceptions.AuthenticationFailed) and getattr(exc, "wait", None):
            details = {"retry_after": int(exc.wait)}  # a login lockout (tracefoundry/lockout.py)
            response["Retry-After"] = str(int(exc.wait))
    response.data = error_body(str(code), message, details)
    return response


_STATUS_CODES = {
    400: "bad_request", 403: "permission_denied", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large", 500: "server_error", 503: "unavailable",
}


class ApiErrorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self._rewrite(request, self.get_response(request))

    async def _acall(self, request):
        return self._rewrite(request, await self.get_response(request))

    def _rewrite(self, request, response):
        if (
            response.status_code >= 400
            and request.path.startswith(API_PREFIXES)
            and not response.get("Content-Type", "").startswith("application/json")
            and not getattr(response, "streaming", False)
        ):
            return self._json(response.status_code, response)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, DEPENDENCY_ERRORS):
            log.warning("event=dependency.unavailable method=%s path=%s error=%s: %s",
                        request.method, request.path, type(exception).__name__,
                        str(exception).strip().splitlines()[0] if str(exception) else "")
            return dependency_unavailable(request)
        if not request.path.startswith(API_PREFIXES):
            return None
        log.exception("unhandled error on %s %s", request.method, request.path)
        return JsonResponse(
            error_body("server_error", "Internal server error; it has been logged."), status=500
        )

    @staticmethod
    def _json(code: int, original) -> JsonResponse:
        message = {
            404: "Not found.",
            405: "Method not allowed.",
            413: "Request body too large.",
            500: "Internal server error; it has been logged.",
        }.get(code, original.reason_phrase or "Error")
        new = JsonResponse(
            error_body(_STATUS_CODES.get(code, "error"), message), status=code,
            json_dumps_params={"separators": (",", ":")},
        )
        for header in ("Retry-After", "WWW-Authenticate", "Allow"):
            if original.has_header(header):
                new[header] = original[header]
        return new
