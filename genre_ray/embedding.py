"""Window images → calibrated window probabilities and penultimate features in one forward pass, and a track's
embedding (the window features averaged, then L2-normalised). Pure torch/NumPy; no Ray.

Every model in :mod:`genre_ray.models` splits as ``forward(x) == classify(embed(x))``; :func:`window_outputs`
runs ``embed`` once and ``classify`` on its result, so the embedding costs no second pass over the network.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import nn

from genre_ray.training import autocast, batched, to_device


@torch.inference_mode()  # as the bare recipe it is held against (no autograd bookkeeping per op)
def window_outputs(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device, batch_size: int = 64,
                   temperature: float = 1.0, embeddings: bool = True,
                   overlap: bool = False, pad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``(N, 1, H, W)`` images (NumPy, or a tensor already on ``device``) → ``(probs (N, C) float32, features (N, D)
    float32 or None)``.

    ``probs = softmax(logits / temperature)`` (temperature scaling; 1.0 = as trained); ``features`` are the
    model's pooled penultimate features (``model.embed``), None when ``embeddings`` is False.

    ``overlap`` (CUDA, NumPy input): batches are copied into pinned host memory and sent to the GPU on a side
    stream :data:`STAGED_AHEAD` batches ahead of the one running, instead of a synchronous copy before each batch.
    Same numbers either way.

    ``pad``: a last batch smaller than ``batch_size`` is zero-padded to it (the extra rows' outputs dropped), so the
    model sees one shape only — what a ``torch.compile``'d model needs to compile once.
    """
    model.eval()
    device = torch.device(device)
    staged = overlap and device.type == "cuda" and not isinstance(images, torch.Tensor)
    stager = _Stager(device) if staged else None
    batches = list(batched(images, batch_size))
    probs, feats = [], []
    ahead: deque = deque(stager.send(b) for b in batches[:STAGED_AHEAD]) if stager else deque()
    for i, b in enumerate(batches):
        if stager:
            x = stager.take(ahead.popleft())
        else:
            x = to_device(b if isinstance(b, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(b)), device)
        n = x.shape[0]
        if pad and n < batch_size:
            x = to_device(torch.cat([x, x.new_zeros((batch_size - n, *x.shape[1:]))]), device)  # channels_last again
        with autocast(device):
            e = model.embed(x)[:n]
            logits = model.classify(e)
        p = torch.softmax(logits.float() / float(temperature), dim=1)
        if stager and i + STAGED_AHEAD < len(batches):
            ahead.append(stager.send(batches[i + STAGED_AHEAD]))  # overlaps batch i's kernels, queued above
        probs.append(p)  # kept on the device: one copy back per call, so batch i+1 is queued while batch i runs
        if embeddings:
            feats.append(e.float())
    if not probs:
        return np.zeros((0, 0), np.float32), (np.zeros((0, 0), np.float32) if embeddings else None)
    p = torch.cat(probs).cpu().numpy()  # float32 already: no second copy of each call's results
    return p, (torch.cat(feats).cpu().numpy() if embeddings else None)


STAGED_AHEAD = 2
"""Batches in flight to the GPU ahead of the running one (``window_outputs(overlap=True)``). With one, batch i+1's
pinned-memory copy (a host memcpy of ~95 MB at bs 1,024, on the thread that launches the kernels) and its transfer
only started once batch i's kernels were queued, and could finish after batch i did: the GPU waited. Two give
that copy a whole batch's time."""


class _Stager:
    """Host → GPU copies on a side stream from pinned memory: ``send`` starts one, ``take`` makes the compute
    stream wait for it and returns the batch in the model's input layout."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def send(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.cuda.Event]:
        host = torch.from_numpy(np.ascontiguousarray(batch)).pin_memory()
        with torch.cuda.stream(self.stream):
            dev = host.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        return dev, done

    def take(self, sent: tuple[torch.Tensor, torch.cuda.Event]) -> torch.Tensor:
        dev, done = sent
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(done)
        dev.record_stream(compute)  # the allocator must not reuse it before the compute stream is done with it
        return to_device(dev, self.device)


def track_embedding(window_features: np.ndarray) -> np.ndarray:
    """``(n, D)`` window features of one track (``n >= 1``) → ``(D,)`` float32: their mean, L2-normalised.

    An all-zero mean (possible only for a degenerate model) stays zero rather than dividing by 0.
    """
    if window_features.ndim != 2 or window_features.shape[0] == 0:
        raise ValueError(f"need (n>=1, D) window features, got shape {window_features.shape}")
    mean = window_features.astype(np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def embedding_dim(model: nn.Module) -> int:
    """D of ``model.embed``: its ``embedding_dim`` attribute (every registered model has one)."""
    dim = getattr(model, "embedding_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{type(model).__name__} has no embedding_dim; models must expose embed()/classify()")
    return dim
