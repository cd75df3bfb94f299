from django.apps import AppConfig


class PayloadsConfig(AppConfig):
    name = "payloads"
    verbose_name = "Payloads"

    def ready(self) -> None:
        from payloads import checks  # noqa: F401  (registers the redaction system check)
