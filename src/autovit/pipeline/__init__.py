"""`autovit run`: the whole pipeline from one config file."""

from autovit.pipeline.config import PipelineConfig
from autovit.pipeline.run import Pipeline, run_pipeline

__all__ = ["Pipeline", "PipelineConfig", "run_pipeline"]
