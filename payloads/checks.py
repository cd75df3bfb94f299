"""System check: a bad redaction setting should stop start-up, not the first write."""

from django.core import checks


@checks.register()
def redaction_configured(app_configs, **kwargs):
    from payloads.redaction import get_redactor

    try:
        get_redactor()
    except Exception as exc:
        return [checks.Error(f"redaction is misconfigured: {exc}", id="payloads.E001")]
    return []
