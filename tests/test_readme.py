"""The README's promises that can drift: quick start and the configuration table."""

from __future__ import annotations

import re

from conftest import ROOT
from vipsgate.config import settings_table

README = (ROOT / "README.md").read_text()


def test_quick_start_is_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make \w+", quick, flags=re.M)
    assert commands == ["make run", "make test"]


def test_configuration_table_matches_the_code():
    """Regenerate with `vipsgate config` when a setting changes."""
    assert settings_table() in README


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
