"""WhiteNoise as middleware that an async (ASGI) middleware chain can call without a thread.

WhiteNoise's own middleware is sync-only. Under daphne Django then adapts the chain around it:
every request, static or not, went into a thread for it and back to the event loop for the
middleware below it (sync_to_async, then async_to_sync), about a millisecond on this machine
for nothing. This subclass keeps WhiteNoise's lookup and responses, and only adds the async
entry point: a request for anything but a static file goes straight on.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    def _static_response(self, request):
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        return None if static_file is None else self.serve(static_file, request)

    async def _acall(self, request):
        if self.autorefresh:
            # Development: the lookup reads the filesystem, so it stays off the event loop.
            response = await sync_to_async(self._static_response)(request)
        else:
            response = self._static_response(request)  # a dict lookup
        if response is not None:
            return response
        return await self.get_response(request)
