"""Document classifier: one class of the vocabulary, a confidence and the top-2 labels.

Two scorers, blended: keyword rules (the class phrases found in the text, longer phrases
weigh more) and a multinomial naive Bayes over word, word-pair and character 4-gram
features, trained at start-up from the same phrases (no weights are downloaded or
stored). The phrases come from ``phrases.json`` beside this file (the union of the
industry templates' ``classPhrases``); the ``classPhrases`` setting adds to or replaces a
class's phrases for one organization. When neither scorer finds anything the label is
``other``.

The text is, in order: ``item.metadata["text"]``, the ``text`` of a file-processor
result in ``ctx.results`` with the same sha256 as the input, else the input itself when
it decodes as UTF-8. Imports only :mod:`paulyops.sdk` and the standard library.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from paulyops.sdk import Context, Item, Result

OTHER: Final = "other"
PHRASES_FILE: Final = Path(__file__).resolve().parent / "phrases.json"
FILE_PROCESSOR: Final = "paulyops.file-processor"
MAX_TEXT_CHARS: Final = 100_000
# Weight of the keyword rules in the blend; naive Bayes gets the rest.
KEYWORD_WEIGHT: Final = 0.6
ALPHA: Final = 0.1  # Laplace smoothing of the naive Bayes counts
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def features(text: str) -> list[str]:
    """Return the naive Bayes features of ``text``: words, word pairs, char 4-grams."""
    words = _words(text)
    out = list(words)
    out += [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    for word in words:
        padded = f"#{word}#"
        out += [f"~{padded[i : i + 4]}" for i in range(max(len(padded) - 3, 1))]
    return out


class Model:
    """A multinomial naive Bayes trained on the class phrases."""

    def __init__(self, phrases: Mapping[str, list[str]]) -> None:
        self.classes = sorted(phrases)
        self.counts = {c: Counter(f for p in phrases[c] for f in features(p)) for c in phrases}
        self.totals = {c: sum(self.counts[c].values()) for c in self.classes}
        self.vocab = {f for counter in self.counts.values() for f in counter}

    def scores(self, feats: list[str]) -> dict[str, float]:
        """Return each class's posterior (uniform prior), tempered by the feature count."""
        known = [f for f in feats if f in self.vocab]
        if not known:
            return {}
        size = len(self.vocab)
        logs = {}
        for c in self.classes:
            denom = math.log(self.totals[c] + ALPHA * size)
            logs[c] = sum(math.log(self.counts[c][f] + ALPHA) - denom for f in known)
        # Naive Bayes is overconfident on long texts: divide by the evidence's length.
        scale = max(len(known) ** 0.5, 1.0)
        top = max(logs.values())
        exp = {c: math.exp((v - top) / scale) for c, v in logs.items()}
        total = sum(exp.values())
        return {c: v / total for c, v in exp.items()}

    def deciding(self, feats: list[str], label: str, limit: int = 5) -> list[str]:
        """Return the words that speak most for ``label``."""
        words = {f for f in feats if f in self.counts[label] and not f.startswith("~")}
        return sorted(words, key=lambda f: (-self.counts[label][f], f))[:limit]


def keyword_hits(text: str, phrases: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Return, per class, the phrases found in ``text`` as whole words."""
    normal = " " + " ".join(_words(text)) + " "
    hits: dict[str, list[str]] = {}
    for label, listed in phrases.items():
        found = [p for p in listed if f" {' '.join(_words(p))} " in normal]
        if found:
            hits[label] = found
    return hits


def _merge(base: Mapping[str, list[str]], extra: object) -> dict[str, list[str]]:
    merged = {label: list(listed) for label, listed in base.items()}
    if isinstance(extra, Mapping):
        for label, listed in extra.items():
            if isinstance(label, str) and label != OTHER and isinstance(listed, list):
                phrases = [p for p in listed if isinstance(p, str) and _words(p)]
                if phrases:
                    merged[label] = sorted({*merged.get(label, []), *phrases})
    return merged


@functools.cache
def bundled_phrases() -> dict[str, list[str]]:
    """Return the phrases shipped with the agent (class -> phrases)."""
    data = json.loads(PHRASES_FILE.read_text(encoding="utf-8"))
    return {str(k): [str(p) for p in v] for k, v in data.items()}


@functools.cache
def _default_model() -> Model:
    return Model(bundled_phrases())


def classify(text: str, phrases: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """Return the label, confidence and top-2 (with the deciding words) of ``text``."""
    table = phrases if phrases is not None else bundled_phrases()
    model = _default_model() if phrases is None else Model(table)
    feats = features(text)
    bayes = model.scores(feats)
    hits = keyword_hits(text, table)
    weights = {k: sum(len(_words(p)) for p in v) for k, v in hits.items()}
    total = sum(weights.values())
    blended: dict[str, float] = {}
    for label in model.classes:
        kw = weights.get(label, 0) / total if total else 0.0
        nb = bayes.get(label, 0.0)
        blended[label] = KEYWORD_WEIGHT * kw + (1 - KEYWORD_WEIGHT) * nb if total else nb
    if not hits:
        # No phrase found: the model alone decides, but only the keyword rules may be sure.
        blended = {k: v * 0.5 for k, v in blended.items()}
        blended[OTHER] = 0.5
    ranked = sorted(blended.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    top2 = [
        {
            "label": label,
            "score": round(score, 4),
            "words": hits.get(label, [])
            or (model.deciding(feats, label) if label in model.counts else []),
        }
        for label, score in ranked
    ]
    return {"label": ranked[0][0], "confidence": round(ranked[0][1], 4), "top2": top2}


def _text_of(ctx: Context, item: Item) -> tuple[str, str]:
    given = item.metadata.get("text")
    if isinstance(given, str):
        return given, "metadata"
    data = item.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    for prior in ctx.results:
        if prior.agent_id == FILE_PROCESSOR and prior.data.get("sha256") == digest:
            text = prior.data.get("text")
            if isinstance(text, str):
                return text, "file-processor"
    try:
        return data.decode("utf-8"), "input"
    except UnicodeDecodeError:
        return "", "none"


def handle(ctx: Context, item: Item) -> Result:
    """Label one input with a document class."""
    text, source = _text_of(ctx, item)
    text = text[:MAX_TEXT_CHARS]
    extra = ctx.settings.get("classPhrases")
    phrases = _merge(bundled_phrases(), extra) if extra else None
    if not text.strip():
        out: dict[str, Any] = {"label": OTHER, "confidence": 0.0, "top2": []}
        out["reason"] = "no text to classify (a scan needs OCR, or an unreadable file)"
    else:
        out = classify(text, phrases)
    out["textSource"] = source
    return Result(data=out, confidence=float(out["confidence"]))
