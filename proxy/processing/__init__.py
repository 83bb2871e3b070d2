"""The libvips pipeline (runs in worker threads). See ``pipeline.process``."""

from .pipeline import ProcessingConfig, Result, process

__all__ = ["ProcessingConfig", "Result", "process"]
