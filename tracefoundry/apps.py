from django.apps import AppConfig


class TraceFoundryConfig(AppConfig):
    name = "tracefoundry"
    verbose_name = "Access"

    def ready(self) -> None:
        from tracefoundry.api import auth_schema  # noqa: F401  (registers the OpenAPI auth extension)

        _steady_pool_reconnects()


def _steady_pool_reconnects() -> None:
    """psycopg_pool retries a failed connection after 1, 2, 4, 8… seconds, so after a database
    outage of a few seconds under load the pool stayed empty for up to as long again, every
    request answering 503 meanwhile. Retrying every second (for the pool's reconnect_timeout,
    5 minutes) costs one connection attempt a second while the database is down and brings the
    service back within a second of the database's return."""
    try:
        from psycopg_pool.base import AttemptWithBackoff
    except ImportError:  # no pool installed: nothing to tune
        return
    AttemptWithBackoff.DELAY_BACKOFF = 1.0
