"""Django integration: add ``"vipsgate.contrib.django"`` to ``INSTALLED_APPS``, then
``{% load vipsgate %}`` (see ``templatetags/vipsgate.py``).

Settings: ``VIPSGATE = {"BASE_URL": ..., "KEY": ..., "SALT": ..., "SIGNATURE_SIZE": 32,
"ENCODE": "base64"}``; a missing entry falls back to the environment
(``VIPSGATE_BASE_URL``, ``IMGPROXY_KEY``, ``IMGPROXY_SALT``, ``IMGPROXY_SIGNATURE_SIZE``,
``VIPSGATE_URL_ENCODING``).
"""
