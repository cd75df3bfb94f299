"""The ``tracefoundry`` command line: enqueue, inspect, cancel and tail runs.

Every command works against the local database (Django ORM, the server's own settings) or a
remote server over HTTP (``--remote`` / ``TRACEFOUNDRY_API_URL``). Both backends return the API's
JSON shapes, so one renderer prints the same output either way.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tracefoundry")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
