"""Every imgproxy setting accounted for: read by ``Settings``, or not supported (why).

``imgproxy_table()`` is the README's "Every imgproxy setting" table (``vipsgate config
--imgproxy`` prints it; ``tests/test_readme.py`` checks the README has it).
"""

from __future__ import annotations

from dataclasses import fields

from . import Settings
from .imgproxy_names import IMGPROXY_SETTINGS
from .unsupported import UNSUPPORTED


def read_names() -> dict[str, str]:
    """Each environment name a field of ``Settings`` reads -> the field's first name."""
    return {name: f.metadata["env"][0] for f in fields(Settings)
            for name in f.metadata.get("env", ())}


def imgproxy_table() -> str:
    read = read_names()
    rows = ["| imgproxy setting | vipsgate |", "|---|---|"]
    for s in IMGPROXY_SETTINGS:
        label = f"`{s.name}`" + (" (Pro)" if s.pro else "")
        if s.name in read:
            primary = read[s.name]
            note = "supported" + (f", as `{primary}`" if primary != s.name else "")
        else:
            note = f"not supported: {UNSUPPORTED[s.name]}"
        rows.append(f"| {label} | {note} |")
    return "\n".join(rows)
