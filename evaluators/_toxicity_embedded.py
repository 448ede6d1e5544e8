"""The toxicity evaluator's embedded backend: alt-profanity-check, weights inside the package.

Why this model (issue #14 weighed three candidates that install offline with their weights):

* **alt-profanity-check** (MIT, 759 kB): a TF-IDF vectoriser and a calibrated linear SVM
  trained on ~200k human-labelled offensive / clean texts. It is maintained (a release per
  scikit-learn release, each retrained with that release) and needs nothing beyond
  scikit-learn and joblib, both already pinned in ``requirements.lock``; it scores thousands of
  texts per second on one CPU core. Its one label is *offensive*, a probability.
* toxic-comment-classifier / tox-block (MIT, 8-18 MB): a Keras BiLSTM trained on the Jigsaw
  data with detoxify's original six labels. More labels, but they need TensorFlow as shipped
  (tox-block's pickle does not even load under current Keras), or a torch re-implementation of
  the network fed from their h5 weights, which this project would then own and keep in step;
  and a recurrent network costs far more per text on a CPU than one sparse dot product.

So the embedded backend is alt-profanity-check: the cheapest to keep working and to run, with
an honest single label. The multi-label model stays detoxify (the primary backend).

The package's own module loads the vectoriser and model at import (its documented API); this
module imports it on first use only, once per process, and keeps it (thread-safe: scikit-learn
predictions do not mutate the estimators).

The installed package version *is* the model version (each release is retrained), so it is
what :data:`MODEL_PREFIX` + version records in the evaluator's provenance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any

import numpy as np

__all__ = [
    "BACKEND",
    "LABELS",
    "MODEL_PREFIX",
    "EmbeddedModel",
    "embedded_model_id",
    "load_embedded",
]

BACKEND = "alt-profanity-check"
#: The distribution whose version names the model (``alt-profanity-check==1.9.1``).
MODEL_PREFIX = f"{BACKEND}=="
#: The one label this model reports.
LABELS: list[str] = ["offensive"]

_LOCK = threading.Lock()
_LOADED: EmbeddedModel | None = None


@dataclass(frozen=True)
class EmbeddedModel:
    """The loaded vectoriser and classifier, with the model id they came from."""

    model_id: str
    vectorizer: Any
    classifier: Any

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Offensive probabilities and the number of known terms per text, in input order.

        A text with no term of the model's vocabulary (empty, another language, only stop
        words) still gets a probability, the model's prior; the term count lets the caller say
        so.

        Examples:
            >>> m = load_embedded()
            >>> probs, terms = m.predict(["you are an idiot, I hate you", ""])
            >>> bool(probs[0] > 0.9), int(terms[1])
            (True, 0)
        """
        features = self.vectorizer.transform(texts)
        probs = self.classifier.predict_proba(features)[:, 1]
        return np.asarray(probs, dtype=np.float64), np.diff(features.indptr)


def embedded_model_id() -> str | None:
    """``alt-profanity-check==<version>`` of the installed package, or None (cheap, no load)."""
    try:
        return MODEL_PREFIX + _dist_version(BACKEND)
    except PackageNotFoundError:
        return None


def load_embedded() -> EmbeddedModel:
    """The embedded model, loaded once per process.

    Raises:
        ImportError: alt-profanity-check (or scikit-learn) is not installed.
    """
    global _LOADED
    with _LOCK:
        if _LOADED is None:
            model_id = embedded_model_id()
            if model_id is None:
                raise ImportError(f"{BACKEND} is not installed")
            from profanity_check import profanity_check as pc

            _LOADED = EmbeddedModel(model_id, pc.vectorizer, pc.model)
        return _LOADED
