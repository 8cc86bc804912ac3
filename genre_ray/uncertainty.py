"""Which labelled tracks a person should look at: the "uncertain" flag and the review list. Pure NumPy/pandas.

A track is uncertain when its calibrated top-1 probability is below ``threshold`` (reason ``low-confidence``)
or when its windows disagree strongly: the normalised entropy of the per-window top-1 vote is above
``vote_entropy_threshold`` (reason ``windows-disagree``), when the file was shorter than one window and was
labelled from a zero-padded one (reason ``padded``), or when its own sample rate left the top of the spectrogram
empty (reason ``low-sample-rate``: the model never saw such images); reasons are joined with ``+``.

Vote entropy: the ``n`` windows' top-1 genres as a histogram ``q`` over the ``C`` classes;
``H(q) / log(min(n, C))`` — 0 when every window agrees, 1 when every window votes for a different genre
(or the votes split evenly over as many genres as there can be); 0 for a single window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

LOW_CONFIDENCE, WINDOWS_DISAGREE, PADDED = "low-confidence", "windows-disagree", "padded"
LOW_SAMPLE_RATE = "low-sample-rate"
"""``padded``: a file shorter than one window, labelled from one zero-padded window — audio unlike any the model
was trained on (prepare keeps no such track), so its confidence means little (a 2-s clip: 0.93 mean confidence,
0.375 accuracy, on 16 synthetic clips)."""
DEFAULT_THRESHOLD = 0.5
"""Used when neither the config nor the model bundle gives one (a bundle trained before calibration)."""
DEFAULT_VOTE_ENTROPY = 0.7
REVIEW_COLUMNS = ["path", "genre", "confidence", "vote_entropy", "reason"]


def vote_entropy(window_probs: np.ndarray) -> float:
    """``(n, C)`` window probabilities → normalised entropy of their top-1 vote, in ``[0, 1]``."""
    n, c = window_probs.shape
    if n < 2 or c < 2:
        return 0.0
    q = np.bincount(window_probs.argmax(axis=1), minlength=c) / n
    q = q[q > 0]
    return float((q * np.log(1 / q)).sum() / np.log(min(n, c)))  # log(1/q) ≥ 0: all agreeing is 0.0, not -0.0


@dataclass(frozen=True)
class UncertaintyRule:
    """``threshold``: calibrated top-1 probability below which a track is uncertain; ``vote_entropy_threshold``:
    normalised vote entropy above which it is."""

    threshold: float = DEFAULT_THRESHOLD
    vote_entropy_threshold: float = DEFAULT_VOTE_ENTROPY

    def reason(self, confidence: float, entropy: float, padded: bool = False, low_sample_rate: bool = False) -> str:
        """``""`` for a confident track, else the reasons it is uncertain joined with ``+``."""
        why = [LOW_CONFIDENCE] if confidence < self.threshold else []
        if entropy > self.vote_entropy_threshold:
            why.append(WINDOWS_DISAGREE)
        if padded:
            why.append(PADDED)
        if low_sample_rate:
            why.append(LOW_SAMPLE_RATE)
        return "+".join(why)


def review_table(labels: pd.DataFrame) -> pd.DataFrame:
    """The uncertain ok rows of a labels table, most uncertain first: lowest calibrated confidence first, ties
    by higher vote entropy, then path. Columns :data:`REVIEW_COLUMNS`."""
    if labels.empty or "uncertain" not in labels.columns:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    rows = labels[(labels["status"] == "ok") & labels["uncertain"].astype(bool)]
    rows = rows.sort_values(["confidence", "vote_entropy", "path"], ascending=[True, False, True], kind="stable")
    return rows.rename(columns={"uncertain_reason": "reason"})[REVIEW_COLUMNS].reset_index(drop=True)


def write_review_list(labels: pd.DataFrame, path: str | Path) -> tuple[Path, int]:
    """Write :func:`review_table` as CSV to ``path`` → ``(path, rows written)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = review_table(labels)
    table.to_csv(path, index=False)
    return path, len(table)
