from django.apps import AppConfig


class PayloadsConfig(AppConfig):
    name = "payloads"
    verbose_name = "Payloads"
