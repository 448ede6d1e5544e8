"""Evaluator throughput against the raw models, and peak memory against the subject count.

Throughput (one process, same texts, same batch size, best of ``--repeats``):

* embedding: ``SentenceTransformer.encode`` on every text the evaluator embeds (prompts,
  responses and references) vs ``EmbeddingEvaluator.evaluate`` on the samples, vs
  ``run_evaluation`` over the same samples stored in a SQLite file (reads, scoring, score and
  embedding writes, profiling). Goals: API >= 0.95 of raw, with the store >= 0.90.
* toxicity: ``Detoxify.predict`` over the responses in batches (as given, and sorted by length)
  vs ``ToxicityEvaluator.evaluate`` vs ``run_evaluation``. Without ``--toxicity-checkpoint`` the
  model is a random-weight checkpoint of detoxify's ``original`` architecture (BERT-base,
  12 layers, 768 wide, 30,522-token WordPiece vocabulary, 512 positions, six labels): the
  timing is the real model's, the scores are meaningless. The header says which was measured.
  On CPU detoxify scores at most ``--detoxify-n`` samples (BERT-base runs a few texts/s there).
* toxicity-embedded: the embedded alt-profanity-check model (real weights, always offline, on
  the CPU): the raw model call ``predict_proba(transform(texts))`` in the evaluator's batches
  vs the package's own ``predict_prob`` vs ``ToxicityEvaluator.evaluate`` vs ``run_evaluation``
  (best of at least 9, since each pass is a fraction of a second); then its items/s and API
  ratio printed beside detoxify's. On a shared CPU read the CPU-time ratio and the in-run
  share: wall-clock ratios of sub-second passes swing by +-20 % with the load.
* minilm-lengths: the raw ``SentenceTransformer.encode`` rate of all-MiniLM-L6-v2 on short
  (~10 words) and on long (~400 words, past its 256-token window) texts.

Every table prints the machine's load average (1/5/15 min) beside its figures, taken before
and after the timed work, so a slow figure can be told from a busy machine.

Peak RSS (``--rss-sizes``, each size in its own subprocess so every figure is a fresh
process): ``run_evaluation`` over N stored interactions; printed as the process peak and the
peak while scoring, next to the RSS after loading. Flat streaming means the same figures for
5,000 and 50,000.

An in-run measure backs the comparisons: the share of each path's own wall time spent inside
the raw model call (``encode`` / ``predict``, timed by wrapping them). It does not compare two
runs, so it holds on a machine whose load changes between runs, where wall and even CPU times
of separate runs differ by +-10 %.

Run: ``python benchmarks/evaluators.py [--n N] [--device auto] [--batch-size B] [--threads T]``.
Defaults: 5,000 samples on CUDA (a few minutes). On CPU 100 samples, since BERT-base scores a
few texts per second there: about 10 minutes on 2 cores with ``--threads 1`` (which a CPU
shared with other work needs; OpenMP spin-waiting otherwise slows small matmuls tenfold),
including the RSS runs at 5,000 and 50,000 interactions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import sqlalchemy as sa

from evalwatch.evaluators.base import BaseEvaluator, Sample
from evalwatch.evaluators.runner import DEFAULT_CHUNK_SIZE, run_evaluation
from evalwatch.storage.db import make_engine, upgrade
from evalwatch.storage.repo import create_run, insert_interactions

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "for",
    "was",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "hot",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "any",
    "new",
    "work",
    "part",
    "take",
    "get",
    "place",
    "made",
    "live",
    "where",
    "after",
    "back",
    "little",
    "only",
    "round",
    "man",
    "year",
    "came",
    "show",
    "every",
    "good",
    "me",
    "give",
    "our",
    "under",
    "name",
    "very",
    "through",
    "just",
    "form",
    "sentence",
    "great",
    "think",
    "say",
    "help",
    "low",
    "line",
    "differ",
    "turn",
    "cause",
    "much",
    "mean",
    "before",
    "move",
    "right",
    "boy",
    "old",
    "too",
    "same",
    "tell",
    "does",
    "set",
    "three",
    "want",
    "air",
    "well",
    "also",
    "play",
    "small",
    "end",
    "put",
    "home",
    "read",
    "hand",
    "port",
    "large",
    "spell",
    "add",
    "even",
    "land",
    "here",
    "must",
    "big",
    "high",
    "such",
    "follow",
    "act",
    "why",
    "ask",
    "men",
    "change",
    "went",
    "light",
    "kind",
    "off",
    "need",
    "house",
    "picture",
    "try",
    "us",
    "again",
    "animal",
    "point",
    "mother",
    "world",
    "near",
    "build",
    "self",
    "earth",
    "father",
    "account",
    "password",
    "invoice",
    "refund",
    "shipping",
    "order",
    "delivery",
    "subscription",
    "cancel",
    "upgrade",
    "warranty",
    "kubernetes",
    "latency",
    "database",
    "migration",
    "token",
    "embedding",
    "gradient",
    "deploy",
    "rollback",
    "idiot",
    "stupid",
    "hate",
    "kill",
    "awful",
    "terrible",
    "garbage",
    "useless",
]
EXOTIC = ["café", "naïve", "über", "日本語", "données", "😀", "—", "Zürich", "straße", "mañana"]


def _words(rng: random.Random, n: int) -> str:
    out = []
    for i in range(n):
        w = rng.choice(EXOTIC) if rng.random() < 0.02 else rng.choice(WORDS)
        if i and rng.random() < 0.08:
            w += rng.choice([".", ",", "?", "!", ";"])
        out.append(w)
    return " ".join(out)


def make_rows(n: int, seed: int = 0, start_index: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` varied traffic rows: 0 to ~900-word responses, some empty, some JSON."""
    rng = random.Random(seed * 1_000_003 + start_index)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(start_index, start_index + n):
        prompt = _words(rng, max(2, int(rng.lognormvariate(math.log(15), 0.7)))) + "?"
        u = rng.random()
        if u < 0.02:
            response = ""
        elif u < 0.05:
            response = json.dumps({"answer": _words(rng, 8), "confidence": round(rng.random(), 2)})
        else:
            response = _words(rng, min(900, max(1, int(rng.lognormvariate(math.log(45), 1.0)))))
        yield {
            "request_id": f"bench-{i}",
            "ts": t0 + timedelta(seconds=i),
            "app": "bench",
            "model_name": "m",
            "model_version": f"v{i % 3}",
            "prompt": prompt,
            "response": response,
            "reference": _words(rng, 12) if rng.random() < 0.5 else None,
            "metadata": {"expects_json": u < 0.05 and u >= 0.02},
        }


def to_samples(rows: list[dict[str, Any]]) -> list[Sample]:
    return [
        Sample(
            subject_id=i,
            prompt=r["prompt"],
            response=r["response"],
            reference=r["reference"],
            meta=r["metadata"],
        )
        for i, r in enumerate(rows)
    ]


def build_store(path: Path, n: int, seed: int, batch: int = 2_000) -> None:
    """A migrated SQLite store holding ``n`` generated interactions (inserted in batches)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    for start in range(0, n, batch):
        insert_interactions(engine, list(make_rows(min(batch, n - start), seed, start)))
    engine.dispose()


def _ids(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT id FROM interactions ORDER BY id"))]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


Timing = tuple[float, float]  # (wall-clock seconds, process CPU seconds)


def _timed(fn: Callable[[], Any], device: str) -> Timing:
    """Wall and process CPU time of ``fn`` (CPU time counts every thread of this process)."""
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t, time.process_time() - c


class ModelClock:
    """Times every call of one bound method (the raw model call inside the evaluator).

    Wrapping the instance attribute lets a run report which share of its wall time went
    into the model itself: an overhead measure that does not depend on comparing two runs,
    so it holds on a machine whose load changes between runs.
    """

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

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        """Run ``fn``; return its result and the seconds spent in the model meanwhile."""
        before = self.seconds
        out = fn()
        return out, self.seconds - before


def load_average() -> str:
    """The 1/5/15-minute load average and the core count, for printing beside a figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _best(times: dict[str, list[Timing]]) -> dict[str, Timing]:
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items() if v}


def _store_run(
    template: Path, workdir: Path, ev: BaseEvaluator[Any], chunk: int, limit: int | None = None
) -> tuple[Timing, Any]:
    """run_evaluation over a fresh copy of the template store; returns (timing, result)."""
    db = workdir / f"run-{time.monotonic_ns()}.db"
    shutil.copy(template, db)
    engine = make_engine(f"sqlite:///{db}")
    ids = _ids(engine)[:limit]
    run = create_run(engine, "traffic")
    assert run.id is not None
    t, c = time.perf_counter(), time.process_time()
    res = run_evaluation(engine, [ev], ids, run_id=run.id, chunk_size=chunk, progress=False)
    seconds = (time.perf_counter() - t, time.process_time() - c)
    engine.dispose()
    db.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return seconds, res


def bench_embedding(
    samples: list[Sample],
    device: str,
    batch_size: int | None,
    repeats: int,
    chunk: int,
    template: Path,
    workdir: Path,
) -> dict[str, Any]:
    from evalwatch.evaluators.embedding import EmbeddingEvaluator

    ev = EmbeddingEvaluator(device=device, batch_size=batch_size)
    t = time.perf_counter()
    ev.load()
    load_s = time.perf_counter() - t
    model, bs = ev.model, ev.batch_size
    texts = [s.prompt for s in samples] + [s.response for s in samples]
    texts += [s.reference for s in samples if s.reference and s.reference.strip()]

    def raw() -> None:
        model.encode(
            texts,
            batch_size=bs,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    def api() -> None:
        ev.evaluate(samples)

    ev.evaluate(samples[:64])  # warm-up (kernels, allocator)
    model.encode(texts[:64], batch_size=bs, show_progress_bar=False)
    _store_run(template, workdir, ev, chunk, limit=64)  # warm-up of the store path
    clock = ModelClock(model, "encode")
    times: dict[str, list[Timing]] = {"raw encode": [], "evaluator API": [], "with store": []}
    share: dict[str, list[float]] = {"evaluator API": [], "with store": []}
    profile = None
    for _ in range(repeats):
        times["raw encode"].append(_timed(raw, ev.device))
        t, m = clock.measure(lambda: _timed(api, ev.device))
        times["evaluator API"].append(t)
        share["evaluator API"].append(m / t[0])
        (t, res), m = clock.measure(lambda: _store_run(template, workdir, ev, chunk))
        times["with store"].append(t)
        share["with store"].append(m / t[0])
        profile = res.profiles[0]
    return {
        "name": "embedding",
        "model": ev.model_id,
        "device": ev.device,
        "dtype": ev.dtype,
        "batch_size": bs,
        "load_s": load_s,
        "n_texts_model": len(texts),
        "best": _best(times),
        "model_share": {k: max(v) for k, v in share.items()},
        "baseline": "raw encode",
        "profile": profile,
    }


def bench_toxicity(
    samples: list[Sample],
    device: str,
    batch_size: int | None,
    repeats: int,
    chunk: int,
    template: Path,
    workdir: Path,
    checkpoint: str,
    hf_config: str | None,
) -> dict[str, Any]:
    import numpy as np

    from evalwatch.evaluators.toxicity import ToxicityEvaluator

    ev = ToxicityEvaluator(
        backend="detoxify",
        device=device,
        batch_size=batch_size,
        checkpoint=checkpoint,
        huggingface_config_path=hf_config,
    )
    t = time.perf_counter()
    ev.load()
    load_s = time.perf_counter() - t
    detox, bs = ev.detoxify, ev.batch_size
    texts = [s.response for s in samples]
    order = np.argsort([-len(x) for x in texts], kind="stable")
    sorted_texts = [texts[i] for i in order]

    def raw(xs: list[str]) -> Callable[[], None]:
        def go() -> None:
            for i in range(0, len(xs), bs):
                detox.predict(xs[i : i + bs])

        return go

    def api() -> None:
        ev.evaluate(samples)

    ev.evaluate(samples[:32])
    detox.predict(texts[:32])
    _store_run(template, workdir, ev, chunk, limit=32)  # warm-up of the store path
    times: dict[str, list[Timing]] = {
        "raw predict (input order)": [],
        "raw predict (sorted)": [],
        "evaluator API": [],
        "with store": [],
    }
    # Unsorted batches are only a reference point (and slow): timed once.
    times["raw predict (input order)"].append(_timed(raw(texts), ev.device))
    clock = ModelClock(detox, "predict")
    share: dict[str, list[float]] = {"evaluator API": [], "with store": []}
    profile = None
    for _ in range(repeats):
        times["raw predict (sorted)"].append(_timed(raw(sorted_texts), ev.device))
        t, m = clock.measure(lambda: _timed(api, ev.device))
        times["evaluator API"].append(t)
        share["evaluator API"].append(m / t[0])
        (t, res), m = clock.measure(lambda: _store_run(template, workdir, ev, chunk))
        times["with store"].append(t)
        share["with store"].append(m / t[0])
        profile = res.profiles[0]
    return {
        "name": "toxicity (detoxify)",
        "model": checkpoint,
        "device": ev.device,
        "dtype": ev.dtype,
        "batch_size": bs,
        "load_s": load_s,
        "n_texts_model": len(texts),
        "best": _best(times),
        "model_share": {k: max(v) for k, v in share.items()},
        "baseline": "raw predict (sorted)",
        "profile": profile,
    }


#: The fewest repeats the embedded toxicity section takes (each pass is well under a second).
EMBEDDED_MIN_REPEATS = 9


def bench_toxicity_embedded(
    samples: list[Sample],
    batch_size: int | None,
    repeats: int,
    chunk: int,
    template: Path,
    workdir: Path,
) -> dict[str, Any]:
    from profanity_check import predict_prob

    from evalwatch.evaluators.toxicity import ToxicityEvaluator

    # A pass takes a fraction of a second here, so a busy machine's stalls decide a best of
    # two: take the best of at least EMBEDDED_MIN_REPEATS (seconds in all).
    repeats = max(repeats, EMBEDDED_MIN_REPEATS)
    ev = ToxicityEvaluator(backend="alt-profanity-check", batch_size=batch_size)
    t = time.perf_counter()
    ev.load()
    load_s = time.perf_counter() - t
    model, bs = ev.embedded_model, ev.batch_size
    assert model is not None
    vec, clf = model.vectorizer, model.classifier
    texts = [s.response for s in samples]

    def raw() -> None:
        for i in range(0, len(texts), bs):
            clf.predict_proba(vec.transform(texts[i : i + bs]))[:, 1]

    def package() -> None:
        predict_prob(texts)

    def api() -> None:
        ev.evaluate(samples)

    ev.evaluate(samples[:64])
    raw()
    _store_run(template, workdir, ev, chunk, limit=64)
    # The raw model call is two calls here (vectoriser, classifier): time both.
    clocks = [ModelClock(vec, "transform"), ModelClock(clf, "predict_proba")]

    def in_model(fn: Callable[[], Any]) -> tuple[Any, float]:
        before = sum(c.seconds for c in clocks)
        out = fn()
        return out, sum(c.seconds for c in clocks) - before

    times: dict[str, list[Timing]] = {
        "raw predict_proba": [],
        "package predict_prob": [],
        "evaluator API": [],
        "with store": [],
    }
    share: dict[str, list[float]] = {"evaluator API": [], "with store": []}
    profile = None
    for _ in range(repeats):
        times["raw predict_proba"].append(_timed(raw, "cpu"))
        times["package predict_prob"].append(_timed(package, "cpu"))
        t_api, m = in_model(lambda: _timed(api, "cpu"))
        times["evaluator API"].append(t_api)
        share["evaluator API"].append(m / t_api[0])
        (t_store, res), m = in_model(lambda: _store_run(template, workdir, ev, chunk))
        times["with store"].append(t_store)
        share["with store"].append(m / t_store[0])
        profile = res.profiles[0]
    return {
        "name": "toxicity (embedded)",
        "model": ev.model_id,
        "device": ev.device,
        "dtype": "scikit-learn",
        "batch_size": bs,
        "load_s": load_s,
        "n_texts_model": len(texts),
        "best": _best(times),
        "model_share": {k: max(v) for k, v in share.items()},
        "baseline": "raw predict_proba",
        "profile": profile,
    }


def bench_minilm_lengths(device: str, n: int, repeats: int, seed: int) -> None:
    """Raw MiniLM encode rate on short and on long texts, with the load average beside each."""
    from evalwatch.evaluators.embedding import EmbeddingEvaluator

    ev = EmbeddingEvaluator(device=device)
    ev.load()
    model, bs = ev.model, ev.batch_size
    rng = random.Random(seed)
    sets = {
        "short (~10 words)": [_words(rng, rng.randint(6, 14)) for _ in range(n)],
        "long (~400 words)": [_words(rng, rng.randint(350, 450)) for _ in range(n)],
    }
    window = getattr(model, "max_seq_length", None)
    print(
        f"\n== raw MiniLM encode rate by text length: {n} texts each, device {ev.device} "
        f"{ev.dtype}, batch size {bs}, token window {window}; best of {repeats}"
    )
    print(f"   {'texts':<20}{'wall s':>9}{'texts/s':>10}{'tokens/text':>13}   load before -> after")
    for label, texts in sets.items():
        model.encode(texts[:bs], batch_size=bs, show_progress_bar=False)  # warm-up
        tokens = model.tokenize(texts[:64])["attention_mask"].sum(dim=1).float().mean().item()
        before = load_average()

        def encode(xs: list[str] = texts) -> None:
            model.encode(xs, batch_size=bs, show_progress_bar=False)

        best = min(_timed(encode, ev.device)[0] for _ in range(repeats))
        after = os.getloadavg()[0]
        print(
            f"   {label:<20}{best:>9.2f}{n / best:>10.1f}{tokens:>13.0f}   {before} -> {after:.2f}"
        )


def print_throughput(r: dict[str, Any], n: int) -> None:
    best: dict[str, Timing] = r["best"]
    base_w, base_c = best[r["baseline"]]
    print(
        f"\n== {r['name']}: {n} samples ({r['n_texts_model']} texts through the model), "
        f"device {r['device']} {r['dtype']}, batch size {r['batch_size']}, "
        f"model load {r['load_s']:.1f} s; best of the repeats"
    )
    print(f"   model: {r['model']}")
    print(f"   baseline: {r['baseline']}")
    print(f"   {r['load_before']} before, {r['load_after']} after")
    print(f"   {'path':<28}{'wall s':>9}{'samples/s':>11}{'ratio':>8}{'CPU s':>9}{'CPU ratio':>11}")
    for k, (w, c) in best.items():
        print(
            f"   {k:<28}{w:>9.2f}{n / w:>11.1f}{base_w / w:>8.3f}{c:>9.2f}"
            f"{(base_c / c if c else float('nan')):>11.3f}"
        )
    for label, key, goal in (("API", "evaluator API", 0.95), ("with store", "with store", 0.90)):
        w, c = best[key]
        share = r["model_share"][key]
        print(
            f"   {label} (goal >= {goal:.2f}): {base_w / w:.3f} of raw by wall clock, "
            f"{base_c / c:.3f} by CPU time; {share:.3f} of its own wall time inside the raw "
            f"model call ({'met' if share >= goal else 'NOT met'} by that in-run measure)"
        )
    p = r["profile"]
    if p is not None:
        gpu = (
            f"GPU util mean/max {p.gpu_util_mean:.0f}/{p.gpu_util_max:.0f} %, memory peak "
            f"{p.gpu_mem_peak_mb:.0f} MB, energy {p.gpu_energy_j or 0:.0f} J, torch peak "
            f"{p.torch_peak_mb or 0:.0f} MB"
            if p.gpu_available
            else f"no GPU figures ({p.gpu_note})"
        )
        tps = f"{p.tokens_per_s:.0f}" if p.tokens_per_s else "n/a"
        print(
            f"   profile (last store run): {p.items_per_s or 0:.1f} items/s, {tps} tokens/s, "
            f"CPU {p.cpu_percent_mean or 0:.0f} %, RSS peak {p.rss_peak_mb or 0:.0f} MB; {gpu}"
        )


# ---------------------------------------------------------------------------------------------
# Peak RSS, one subprocess per size


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which exec resets (ru_maxrss would carry the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(
    db: Path, evaluators: list[str], options: dict[str, dict[str, Any]], chunk: int
) -> None:
    from evalwatch.evaluators.base import create_evaluator

    proc = psutil.Process()
    engine = make_engine(f"sqlite:///{db}")
    ids = _ids(engine)
    evs = [create_evaluator(name, options.get(name, {})) for name in evaluators]
    for ev in evs:
        ev.load()
    after_load = proc.memory_info().rss / 2**20
    peak_run = [after_load]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            peak_run[0] = max(peak_run[0], proc.memory_info().rss / 2**20)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    run = create_run(engine, "traffic")
    assert run.id is not None
    t = time.perf_counter()
    res = run_evaluation(engine, evs, ids, run_id=run.id, chunk_size=chunk, progress=False)
    seconds = time.perf_counter() - t
    stop.set()
    th.join()
    print(
        json.dumps(
            {
                "n": len(ids),
                "scores": res.scores_written,
                "embeddings": res.embeddings_written,
                "after_load_mb": after_load,
                "run_peak_mb": peak_run[0],
                "process_peak_mb": _peak_rss_mb(),
                "seconds": seconds,
            }
        )
    )


def bench_rss(
    sizes: list[int],
    evaluators: list[str],
    options: dict[str, dict[str, Any]],
    chunk: int,
    seed: int,
    workdir: Path,
    threads: int | None = None,
) -> None:
    print(
        f"\n== peak RSS of run_evaluation ({', '.join(evaluators)}; chunk size {chunk}; "
        "each size in a fresh subprocess; SQLite store)"
    )
    print(
        f"   {'interactions':>12}{'after load MB':>15}{'run peak MB':>13}"
        f"{'process peak MB':>17}{'seconds':>10}{'scores':>10}"
    )
    for n in sizes:
        db = workdir / f"rss-{n}.db"
        build_store(db, n, seed)
        cmd = [
            sys.executable,
            __file__,
            "--_rss-child",
            str(db),
            "--evaluators",
            ",".join(evaluators),
            "--_options",
            json.dumps(options),
            "--chunk-size",
            str(chunk),
        ]
        if threads:
            cmd += ["--threads", str(threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"   {n:>12}  FAILED: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"   {r['n']:>12}{r['after_load_mb']:>15.0f}{r['run_peak_mb']:>13.0f}"
            f"{r['process_peak_mb']:>17.0f}{r['seconds']:>10.1f}{r['scores']:>10}"
        )
        db.unlink()


def _with_load(bench: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = load_average()
    r = bench()
    r["load_before"], r["load_after"] = before, load_average()
    return r


def print_toxicity_backends(results: list[tuple[dict[str, Any], int]]) -> None:
    """Each toxicity backend's evaluator-API items/s and its ratio to the raw model call."""
    print("\n== toxicity backends side by side (evaluator API, best of the repeats)")
    print(f"   {'backend':<22}{'samples':>8}{'items/s':>10}{'API/raw':>9}  model")
    for r, n in results:
        w_api = r["best"]["evaluator API"][0]
        w_raw = r["best"][r["baseline"]][0]
        print(f"   {r['name']:<22}{n:>8}{n / w_api:>10.1f}{w_raw / w_api:>9.3f}  {r['model']}")
    print(f"   {load_average()}")


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--n",
        type=int,
        default=None,
        help="samples for the throughput part (default 5000 on CUDA; 100 on CPU, where "
        "BERT-base toxicity runs at a few texts per second)",
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--batch-size", type=int, default=None, help="default: per evaluator/device")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per path")
    ap.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--evaluators",
        default="embedding,toxicity-embedded,toxicity,minilm-lengths",
        help="throughput part: embedding, toxicity-embedded, toxicity (detoxify) and/or "
        "minilm-lengths (raw MiniLM rate on short and long texts)",
    )
    ap.add_argument(
        "--detoxify-n",
        type=int,
        default=None,
        help="samples for detoxify (default: --n on CUDA, at most 64 on CPU)",
    )
    ap.add_argument(
        "--minilm-n",
        type=int,
        default=None,
        help="texts per length for minilm-lengths (default 1000 on CUDA, 128 on CPU)",
    )
    ap.add_argument(
        "--toxicity-checkpoint",
        default=None,
        help="a real detoxify .ckpt (default: random weights, real architecture)",
    )
    ap.add_argument(
        "--toxicity-hf-config",
        default=None,
        help="local base-model folder for --toxicity-checkpoint",
    )
    ap.add_argument(
        "--toxicity-size",
        choices=["base", "tiny"],
        default="base",
        help="random checkpoint size when no real one is given",
    )
    ap.add_argument("--rss-sizes", default="5000,50000", help="comma-separated; empty to skip")
    ap.add_argument(
        "--rss-evaluators",
        default=None,
        help="default: heuristics,embedding,toxicity on CUDA; heuristics,toxicity "
        "(tiny random checkpoint) on CPU, where MiniLM/BERT-base over 50k "
        "texts would take hours",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice). On a CPU shared with other work, 1 "
        "avoids OpenMP spin-waiting that can slow small matmuls tenfold",
    )
    ap.add_argument("--_rss-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args._rss_child:
        rss_child(
            Path(args._rss_child),
            args.evaluators.split(","),
            json.loads(args._options),
            args.chunk_size,
        )
        return

    import torch

    from evalwatch.evaluators.profiling import resolve_device
    from evalwatch.evaluators.toxicity import build_random_checkpoint

    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    print(
        f"device {device}"
        + (
            f" ({torch.cuda.get_device_name()})"
            if cuda
            else f" (no GPU; torch threads {torch.get_num_threads()}, {os.cpu_count()} cores)"
        )
        + f"; {load_average()}"
    )
    if args.n is None:
        args.n = 5000 if cuda else 100
        if not cuda:
            print(
                "CPU: --n defaults to 100 here (pass --n 5000 for the full size; hours on 2 cores)"
            )
    t_all = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="evalwatch-bench-"))
    try:
        rows = list(make_rows(args.n, args.seed))
        samples = to_samples(rows)
        template = workdir / "template.db"
        build_store(template, args.n, args.seed)
        names = [x for x in args.evaluators.split(",") if x]
        ckpt, hf = args.toxicity_checkpoint, args.toxicity_hf_config
        if "toxicity" in names and ckpt is None:
            c, b = build_random_checkpoint(workdir / "detox", size=args.toxicity_size)
            ckpt, hf = str(c), str(b)
            arch = (
                "BERT-base: 12 layers x 768, 512 positions"
                if args.toxicity_size == "base"
                else "2 layers x 32"
            )
            print(
                f"toxicity: random-weight detoxify checkpoint, {args.toxicity_size} size "
                f"({arch}), "
                "MiniLM's bert-base-uncased WordPiece tokenizer: real cost, meaningless scores"
            )
        if "embedding" in names:
            r = _with_load(
                lambda: bench_embedding(
                    samples,
                    device,
                    args.batch_size,
                    args.repeats,
                    args.chunk_size,
                    template,
                    workdir,
                )
            )
            print_throughput(r, args.n)
        toxicity: list[tuple[dict[str, Any], int]] = []
        if "toxicity-embedded" in names:
            r = _with_load(
                lambda: bench_toxicity_embedded(
                    samples, args.batch_size, args.repeats, args.chunk_size, template, workdir
                )
            )
            print_throughput(r, args.n)
            toxicity.append((r, args.n))
        if "toxicity" in names:
            assert ckpt is not None
            n_detox = args.detoxify_n or (args.n if cuda else min(args.n, 64))
            detox_template = template
            if n_detox < args.n:
                print(f"\n(detoxify on CPU: the first {n_detox} samples; --detoxify-n to change)")
                detox_template = workdir / "template-detoxify.db"
                build_store(detox_template, n_detox, args.seed)
            r = _with_load(
                lambda: bench_toxicity(
                    samples[:n_detox],
                    device,
                    args.batch_size,
                    args.repeats,
                    args.chunk_size,
                    detox_template,
                    workdir,
                    ckpt,
                    hf,
                )
            )
            print_throughput(r, n_detox)
            toxicity.append((r, n_detox))
        if toxicity:
            print_toxicity_backends(toxicity)
        if "minilm-lengths" in names:
            bench_minilm_lengths(
                device, args.minilm_n or (1000 if cuda else 128), args.repeats, args.seed
            )
        sizes = [int(x) for x in args.rss_sizes.split(",") if x.strip()]
        if sizes:
            rss_names = (
                args.rss_evaluators
                or ("heuristics,embedding,toxicity" if cuda else "heuristics,toxicity")
            ).split(",")
            options: dict[str, dict[str, Any]] = {"embedding": {"device": device}}
            if "toxicity" in rss_names:
                if cuda or args.toxicity_checkpoint:
                    tckpt, thf = ckpt, hf
                else:
                    c, b = build_random_checkpoint(workdir / "detox-tiny", size="tiny")
                    tckpt, thf = str(c), str(b)
                    print(
                        "\n(RSS on CPU: toxicity uses a tiny random checkpoint so 50k texts "
                        "finish; model memory is constant either way)"
                    )
                if tckpt is None:
                    c, b = build_random_checkpoint(workdir / "detox-rss", size=args.toxicity_size)
                    tckpt, thf = str(c), str(b)
                options["toxicity"] = {
                    "checkpoint": tckpt,
                    "huggingface_config_path": thf,
                    "device": device,
                }
            bench_rss(sizes, rss_names, options, args.chunk_size, args.seed, workdir, args.threads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
