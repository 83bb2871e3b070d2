"""The Django app config (label ``vipsgate``)."""

from __future__ import annotations

from django.apps import AppConfig


class VipsgateConfig(AppConfig):
    name = "vipsgate.contrib.django"
    label = "vipsgate"
    verbose_name = "vipsgate image URLs"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
