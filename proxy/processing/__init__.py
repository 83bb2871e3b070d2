"""The libvips pipeline (runs in workers). See ``pipeline.process``."""

from .pipeline import Result, process

__all__ = ["Result", "process"]
