"""The Django app config (label ``vipsgate``)."""

from __future__ import annotations

from django.apps import AppConfig


class VipsgateConfig(AppConfig):
    name = "vipsgate.contrib.django"
    label = "vipsgate"
    verbose_name = "vipsgate image URLs"
