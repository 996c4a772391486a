"""Top-1 accuracy of the bundled document-classifier on the generated held-back set.

Prints the accuracy (deterministic: seeded documents), next to the keyword rules alone
and the naive Bayes model alone, and the cost per document next to a plain lower-case +
word split of the same texts measured in the same run. Run: ``.venv/bin/python
bench/classifier_accuracy.py [PER_CLASS]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bundled.classifier_corpus import generate  # noqa: E402

from paulyops.bundled.document_classifier.agent import (  # noqa: E402  # after the path tweak
    Model,
    bundled_phrases,
    classify,
    features,
    keyword_hits,
)


def main() -> None:
    """Print accuracy and per-document cost."""
    per_class = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    docs = generate(per_class)
    phrases = bundled_phrases()
    model = Model(phrases)
    started = time.perf_counter()
    blended = sum(classify(text)["label"] == label for text, label in docs)
    cost = time.perf_counter() - started
    keyword = 0
    for text, label in docs:
        hits = keyword_hits(text, phrases)
        best = max(hits, key=lambda k: len(hits[k]), default="other")
        keyword += best == label
    bayes = 0
    for text, label in docs:
        scores = model.scores(features(text))
        bayes += (max(scores, key=lambda k: scores[k]) if scores else "other") == label
    started = time.perf_counter()
    for text, _label in docs:
        text.lower().split()
    baseline = time.perf_counter() - started
    n = len(docs)
    print(f"documents: {n} ({per_class} per class, {n // per_class} classes)")
    print(f"top-1 accuracy, blended:       {blended / n:.1%}")
    print(f"top-1 accuracy, keywords only: {keyword / n:.1%}")
    print(f"top-1 accuracy, Bayes only:    {bayes / n:.1%}")
    print(
        f"cost per document: {cost / n * 1e3:.3f} ms "
        f"({cost / max(baseline, 1e-9):.0f}x a plain split)"
    )


if __name__ == "__main__":
    main()
