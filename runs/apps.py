from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        from payloads.references import reference_source_register
        from runs.retention import RUN_OUTPUTS

        # A run's output_ref points at a blob without a PayloadRef row: tell payloads.
        reference_source_register(RUN_OUTPUTS)
