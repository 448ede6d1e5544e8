"""Evaluators: the contract, the registry, the built-in evaluators, profiling and the runner.

Importing this package registers the built-in evaluators. Their heavy libraries (torch,
sentence-transformers, detoxify) load only when an evaluator is loaded.
"""

from evalwatch.evaluators.base import (
    ENTRY_POINT_GROUP,
    BaseEvaluator,
    BatchResult,
    Evaluator,
    EvaluatorConfig,
    EvaluatorConfigError,
    EvaluatorUnavailable,
    MetricKind,
    MetricSpec,
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
from evalwatch.evaluators.embedding import EmbeddingConfig, EmbeddingEvaluator
from evalwatch.evaluators.heuristics import HeuristicsConfig, HeuristicsEvaluator
from evalwatch.evaluators.judge import JudgeConfig, JudgeEvaluator
from evalwatch.evaluators.profiling import Profiler
from evalwatch.evaluators.runner import RunResult, run_evaluation
from evalwatch.evaluators.summary import (
    MetricAccumulator,
    MetricSummary,
    ScoreSummarizer,
    summarize,
)
from evalwatch.evaluators.toxicity import ToxicityConfig, ToxicityEvaluator

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
    "JudgeConfig",
    "JudgeEvaluator",
    "MetricAccumulator",
    "MetricKind",
    "MetricSpec",
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
