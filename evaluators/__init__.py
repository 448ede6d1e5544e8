"""Evaluators: the contract, the registry, the built-in evaluators, profiling and the runner.

Importing this package registers the built-in evaluators. Their heavy libraries (torch,
sentence-transformers, detoxify) load only when an evaluator is loaded.
"""

from evaluators.base import (
    ENTRY_POINT_GROUP,
    BaseEvaluator,
    BatchResult,
    Evaluator,
    EvaluatorConfig,
    EvaluatorConfigError,
    EvaluatorUnavailable,
    Provenance,
    Sample,
    ScoreResult,
    config_hash,
    create_evaluator,
    evaluator_names,
    get_evaluator_class,
    load_entry_points,
    register_evaluator,
)
from evaluators.embedding import EmbeddingConfig, EmbeddingEvaluator
from evaluators.heuristics import HeuristicsConfig, HeuristicsEvaluator
from evaluators.profiling import Profiler
from evaluators.runner import RunResult, run_evaluation
from evaluators.summary import MetricAccumulator, MetricSummary, ScoreSummarizer, summarize
from evaluators.toxicity import ToxicityConfig, ToxicityEvaluator

try:
    import evaluators.judge  # noqa: F401  (registers "judge" once that module exists)
except ModuleNotFoundError as _exc:
    if _exc.name != "evaluators.judge":
        raise

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseEvaluator",
    "BatchResult",
    "EmbeddingConfig",
    "EmbeddingEvaluator",
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorConfigError",
    "EvaluatorUnavailable",
    "HeuristicsConfig",
    "HeuristicsEvaluator",
    "MetricAccumulator",
    "MetricSummary",
    "Profiler",
    "Provenance",
    "RunResult",
    "Sample",
    "ScoreResult",
    "ScoreSummarizer",
    "ToxicityConfig",
    "ToxicityEvaluator",
    "config_hash",
    "create_evaluator",
    "evaluator_names",
    "get_evaluator_class",
    "load_entry_points",
    "register_evaluator",
    "run_evaluation",
    "summarize",
]
