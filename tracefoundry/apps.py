from django.apps import AppConfig


class TraceFoundryConfig(AppConfig):
    name = "tracefoundry"
    verbose_name = "Access"

    def ready(self) -> None:
        from tracefoundry import schema  # noqa: F401  (registers the OpenAPI auth extension)
