"""Deterministic synthetic music-genre corpus in the GTZAN layout (no Ray, no network).

No real dataset can be downloaded where this project is tested, so tests and the demo train on
audio rendered here.  Every clip is a small multi-track arrangement — drums, bass, harmony and
(usually) a melody — built from a per-genre :class:`GenreRecipe` in :data:`GENRES`.  Recipes differ
in the ways that make genres recognisable to people (and to a CNN on log-mel images): tempo range,
groove (drum pattern, swing), instrument timbres, register, note density, scale and chord
progression, overdrive, noise and "room".  Within a class every clip draws its own tempo, key,
progression, drum pattern, instrument choice, mix levels, timing jitter, loudness, tone and noise,
so a model has to learn the genre rather than memorise a waveform.

The ten genres (GTZAN names, in GTZAN order):

* **blues** — 68–100 BPM swung-8th shuffle (hat/ride on the triplet grid, backbeat snare); 12-bar
  I7–IV7–V7 (or minor) changes; walking "boogie" bass, root–5th/6th shuffle guitar riff, blues-scale
  lead on harmonica, overdriven guitar or sax; piano/organ comping.
* **classical** — 50–96 BPM with rubato, *no drums*; functional progressions in major or harmonic
  minor; sustained string section (detuned, vibrato, slow attack), cello roots, piano arpeggios
  (decaying harmonics), violin/flute/piano melody over a wide, high register; hall reverb, very clean.
* **country** — 96–140 BPM two-step / train beat with brushes and rim clicks; major-pentatonic
  I–IV–V; Karplus–Strong acoustic-guitar strums (string-by-string spread), root–fifth "boom-chick"
  bass, banjo rolls, fiddle lead.
* **disco** — 112–130 BPM four-on-the-floor kick, clap on 2 & 4, open hi-hat on every off-beat;
  minor-7th / dorian vamps; octave-jumping synth bass in 8ths, string stabs, muted 16th guitar chops.
* **hiphop** — 78–98 BPM boom-bap with 16th swing; long 808 sub-bass notes that follow the kick;
  sparse electric-piano / piano chord loop; dark low-passed mix with vinyl crackle.
* **jazz** — 100–200 BPM swung ride cymbal ("ding ding-a ding"), hi-hat foot on 2 & 4, feathered
  kick, no backbeat; ii–V–I changes with 7th chords; walking upright bass in quarter notes,
  syncopated rootless piano comping, sax/trumpet/vibes lines.
* **metal** — 100–190 BPM double-kick 16ths or gallops, frequent crashes; phrygian/aeolian power-chord
  riffs in a low register; heavily distorted palm-muted 16th chugs, distorted bass, shred lead.
* **pop** — 92–126 BPM straight kick/clap/hat groove; I–V–vi–IV-family progressions in major;
  synth bass in 8ths, pads or piano, plucky synth arpeggios, clean vocal-range synth lead.
* **reggae** — 64–92 BPM one-drop (kick + rim on beat 3) or steppers; organ/guitar "skank" chords on
  every off-beat (plus organ "bubble"); deep melodic bass with rests; melodica/brass lines.
* **rock** — 100–152 BPM kick/snare backbeat with 8th hats and crashes on phrase starts; I–IV–V,
  mixolydian and aeolian progressions; moderately overdriven power chords in 8ths, root-8th bass,
  overdriven lead.

Public API: :data:`GENRES`, :func:`synth_clip`, :func:`clip_seed`, :func:`write_corpus`.
Everything is a pure function of its arguments (no global RNG), so the same arguments always
give identical arrays and byte-identical WAV/FLAC files.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import soundfile as sf
from scipy import signal

from genre_ray.registry import Registry

__all__ = [
    "GENRES",
    "GENRE_NAMES",
    "GenreRecipe",
    "Part",
    "synth_clip",
    "clip_seed",
    "write_corpus",
]

DEFAULT_SR = 22_050

# ---------------------------------------------------------------------------------------------
# Low-level DSP helpers
# ---------------------------------------------------------------------------------------------

_TAB_N = 4096  # wavetable length (power of two: index wrap is a bit-mask)


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


@lru_cache(maxsize=1024)
def _table(harm: tuple[float, ...]) -> np.ndarray:
    """One period of sum_k harm[k-1]·sin(2πk·x), peak-normalised, float32 (length _TAB_N)."""
    k = np.arange(1, len(harm) + 1)[:, None]
    ph = np.arange(_TAB_N)[None, :] / _TAB_N
    tab = (np.asarray(harm)[:, None] * np.sin(2 * np.pi * k * ph)).sum(0)
    tab /= max(float(np.abs(tab).max()), 1e-9)
    tab = tab.astype(np.float32)
    tab.flags.writeable = False  # shared through the cache
    return tab


def _bandlimit(harm: Sequence[float], freq: float, sr: int) -> tuple[float, ...]:
    kmax = max(1, int(0.45 * sr / freq))
    return tuple(harm[:kmax])


def _phase(freq: float, n: int, sr: int, vib: float = 0.0, vib_rate: float = 5.5) -> np.ndarray:
    """Phase in cycles (float64) of a tone of ``freq`` Hz with optional vibrato (relative depth)
    that fades in over the first 0.3 s (closed-form integral, no cumulative sum)."""
    ph = np.arange(n) * (freq / sr)
    if vib > 0.0:
        t = np.arange(n, dtype=np.float32) / np.float32(sr)
        w = np.float32(2 * np.pi * vib_rate)
        depth = np.minimum(np.float32(1.0), t / np.float32(0.3)) * np.float32(freq * vib / w)
        ph += depth * (np.float32(1.0) - np.cos(w * t))
    return ph


def _idx(ph: np.ndarray, ratio: float = 1.0) -> np.ndarray:
    """Wavetable indices for a phase (cycles), optionally scaled (detuned copy)."""
    return (ph * (ratio * _TAB_N)).astype(np.int64) & (_TAB_N - 1)


def _phase_idx(freq: float, n: int, sr: int, vib: float = 0.0, vib_rate: float = 5.5) -> np.ndarray:
    return _idx(_phase(freq, n, sr, vib, vib_rate))


@lru_cache(maxsize=64)
def _ramp(n: int) -> np.ndarray:
    r = np.linspace(0.0, 1.0, n, dtype=np.float32)
    r.flags.writeable = False
    return r


def _fade_out(y: np.ndarray, n_fade: int) -> np.ndarray:
    n_fade = min(n_fade, len(y))
    if n_fade > 0:
        y[-n_fade:] *= _ramp(n_fade)[::-1]
    return y


def _fade_in(y: np.ndarray, n_fade: int) -> np.ndarray:
    n_fade = min(n_fade, len(y))
    if n_fade > 0:
        y[:n_fade] *= _ramp(n_fade)
    return y


@lru_cache(maxsize=256)
def _sos(kind: str, freq: float | tuple[float, float], sr: int, order: int = 2) -> np.ndarray:
    return signal.butter(order, freq, btype=kind, fs=sr, output="sos")


def _filt(y: np.ndarray, kind: str, freq, sr: int, order: int = 2) -> np.ndarray:
    nyq = 0.5 * sr
    if kind == "lowpass" and freq >= 0.95 * nyq:
        return y
    if isinstance(freq, tuple):
        freq = (freq[0], min(freq[1], 0.95 * nyq))
    else:
        freq = min(freq, 0.95 * nyq)
    return signal.sosfilt(_sos(kind, freq, sr, order), y).astype(y.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# Pitched voices: VOICES[name](freq_hz, dur_s, sr, rng) -> float32 note incl. its release tail
# ---------------------------------------------------------------------------------------------

VoiceFn = Callable[[float, float, int, np.random.Generator], np.ndarray]
VOICES: dict[str, VoiceFn] = {}
_TRUNCATABLE: set[str] = set()  # struck/plucked voices: a short note is a faded-out long one


def _register_voice(name: str, fn: VoiceFn) -> None:
    if name in VOICES:
        raise ValueError(f"voice {name!r} registered twice")
    VOICES[name] = fn
    if getattr(fn, "func", None) in (_v_decay, _v_pluck):
        _TRUNCATABLE.add(name)


def _v_decay(freq, dur, sr, rng, *, body, bright, tau, tau_b, release=0.08, attack=0.002,
             bright_amt=1.0, noise=0.0):
    """Struck/plucked tone: a body spectrum decaying with ``tau`` (shorter for high notes) plus a
    bright spectrum decaying faster (``tau_b``) — piano, e-piano, vibes, upright & synth bass."""
    tau_f = tau * (261.6 / freq) ** 0.5
    n_on = max(1, int(min(dur, 5.0 * tau_f) * sr))
    n_rel = int(release * sr)
    n = n_on + n_rel
    t = np.arange(n, dtype=np.float32) / sr
    idx = _phase_idx(freq, n, sr)
    y = _table(_bandlimit(body, freq, sr))[idx] * np.exp(-t / tau_f)
    y += bright_amt * _table(_bandlimit(bright, freq, sr))[idx] * np.exp(-t / tau_b)
    if noise > 0:
        y += noise * rng.standard_normal(n).astype(np.float32) * np.exp(-t / 0.01)
    _fade_in(y, int(attack * sr))
    _fade_out(y, n_rel)
    return y


def _v_sustain(freq, dur, sr, rng, *, harm, attack, release, decay=0.3, sustain=1.0, vib=0.0,
               vib_rate=5.5, detune=0.0, breath=0.0, bright=None, tau_b=0.1):
    """Held tone with ADSR envelope: strings, pads, organ, reeds, brass, synth leads."""
    n_on = max(1, int(dur * sr))
    n_rel = int(release * sr)
    n = n_on + n_rel
    t = np.arange(n, dtype=np.float32) / sr
    tab = _table(_bandlimit(harm, freq, sr))
    rate = vib_rate * (1.0 + 0.1 * rng.uniform(-1, 1))
    if detune > 0.0:
        ph = _phase(freq, n, sr, vib, rate)
        y = 0.5 * (tab[_idx(ph, 1 + detune)] + tab[_idx(ph, 1 - detune)])
    else:
        idx = _phase_idx(freq, n, sr, vib, rate)
        y = tab[idx]
        if bright is not None:
            y = y + _table(_bandlimit(bright, freq, sr))[idx] * np.exp(-t / tau_b)
    env = sustain + (1.0 - sustain) * np.exp(-t / decay)
    env[n_on:] = env[n_on - 1]
    if breath > 0:
        # breath / bow noise in a band above the fundamental
        band = (min(2 * freq, 4000.0), min(10 * freq, 9000.0))
        nz = _filt(rng.standard_normal(n).astype(np.float32), "bandpass", band, sr)
        y = y + 3.0 * breath * nz
    y = y * env
    _fade_in(y, int(attack * sr))
    _fade_out(y, n_rel)
    return y


def _v_pluck(freq, dur, sr, rng, *, tau=1.2, bright=0.6, max_len=2.5, release=0.03, mix=0.5):
    """Karplus–Strong plucked string (vectorised one period at a time)."""
    p = max(2, int(round(sr / freq - 0.5)))
    n_on = max(p + 2, int(min(dur, max_len) * sr))
    n_rel = int(release * sr)
    n = n_on + n_rel
    damp = float(np.exp(-1.0 / (tau * freq)))
    y = np.zeros(n + 1, dtype=np.float32)
    burst = rng.uniform(-1.0, 1.0, p).astype(np.float32)
    burst = bright * burst + (1.0 - bright) * 0.5 * (burst + np.roll(burst, 1))
    burst -= burst.mean()
    y[1: p + 1] = burst
    a, b = damp * mix, damp * (1.0 - mix)
    for s in range(p + 1, n + 1, p):
        e = min(s + p, n + 1)
        y[s:e] = a * y[s - p: e - p] + b * y[s - p - 1: e - p - 1]
    y = y[1:] * 1.6
    _fade_out(y, n_rel)
    return y


def _v_sub808(freq, dur, sr, rng):
    """808-style sub bass: sine with a pitch drop at the attack, long decay, soft saturation."""
    n = max(1, int(min(dur + 0.05, 2.0) * sr))
    t = np.arange(n) / sr
    f = freq * (1.0 + 1.2 * np.exp(-t / 0.025))
    y = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.9)
    y = (np.tanh(2.0 * y) / np.tanh(2.0)).astype(np.float32)
    _fade_in(y, int(0.002 * sr))
    _fade_out(y, int(0.04 * sr))
    return y


_SAW = tuple(1.0 / k for k in range(1, 40))
_SQUARE = tuple((1.0 / k if k % 2 else 0.0) for k in range(1, 40))
_SOFT = tuple(1.0 / k ** 2 for k in range(1, 20))

for _name, _fn in {
    # decaying-harmonic (struck / plucked) voices
    "piano": partial(_v_decay, body=(1, .45, .25, .12, .08, .05, .03),
                     bright=(0, .5, .4, .35, .3, .25, .2, .15, .12, .1),
                     tau=1.4, tau_b=0.18, noise=0.05),
    "epiano": partial(_v_decay, body=(1, .12, .03), bright=(0, 0, 0, 0, 0, 0, .6, 0, 0, 0, 0, 0, 0, .3),
                      tau=1.6, tau_b=0.05, bright_amt=0.6),
    "vibes": partial(_v_decay, body=(1, 0, 0, .25), bright=(0, 0, 0, 0, 0, 0, 0, 0, 0, .4),
                     tau=1.8, tau_b=0.08),
    "bells": partial(_v_decay, body=(1, 0, .2, 0, .1), bright=(0, .5, 0, .4, 0, 0, .3), tau=1.2, tau_b=0.15),
    "bass_upright": partial(_v_decay, body=(1, .5, .25, .1, .05), bright=(0, .3, .3, .2, .15, .1),
                            tau=0.45, tau_b=0.05, noise=0.1, attack=0.004),
    "bass_electric": partial(_v_decay, body=(1, .55, .3, .18, .1, .06), bright=(0, .3, .35, .3, .2, .15, .1),
                             tau=1.0, tau_b=0.09, attack=0.003),
    "bass_synth": partial(_v_decay, body=_SAW[:6], bright=_SAW[:24], tau=2.5, tau_b=0.12, attack=0.003),
    "pluck_synth": partial(_v_decay, body=_SQUARE[:5], bright=_SAW[:20], tau=0.5, tau_b=0.07),
    # sustained voices
    "strings": partial(_v_sustain, harm=_SAW[:14], attack=0.25, release=0.35, vib=0.004, detune=0.0025),
    "cello": partial(_v_sustain, harm=_SAW[:18], attack=0.15, release=0.3, vib=0.004, breath=0.01),
    "violin": partial(_v_sustain, harm=_SAW[:16], attack=0.08, release=0.15, vib=0.006, vib_rate=6.0, breath=0.02),
    "fiddle": partial(_v_sustain, harm=tuple(h * (1.3 if k in (2, 3, 4) else 1) for k, h in enumerate(_SAW[:16])),
                      attack=0.03, release=0.08, vib=0.007, vib_rate=6.5, breath=0.04),
    "flute": partial(_v_sustain, harm=(1, .25, .08, .03), attack=0.06, release=0.1, vib=0.005, breath=0.05),
    "pad": partial(_v_sustain, harm=_SOFT, attack=0.3, release=0.4, detune=0.004),
    "organ": partial(_v_sustain, harm=(1, 1, .6, .7, 0, .4, 0, .5), attack=0.004, release=0.03),
    "sax": partial(_v_sustain, harm=(1, .7, .8, .5, .45, .35, .3, .2, .15, .1, .08), attack=0.04, release=0.06,
                   vib=0.006, vib_rate=5.0, breath=0.05),
    "brass": partial(_v_sustain, harm=(1, .85, .7, .6, .5, .42, .35, .28, .2, .15, .1), attack=0.05,
                     release=0.07, vib=0.004, bright=_SAW[:20], tau_b=0.06),
    "harmonica": partial(_v_sustain, harm=(1, .9, .3, .6, .2, .4, .1, .2), attack=0.03, release=0.05,
                         vib=0.01, vib_rate=6.5, breath=0.04),
    "synth_lead": partial(_v_sustain, harm=_SQUARE[:25], attack=0.01, release=0.08, vib=0.003, decay=0.2,
                          sustain=0.7),
    "dist_guitar": partial(_v_sustain, harm=_SAW[:30], attack=0.003, release=0.03, decay=0.25, sustain=0.5),
    "lead_guitar": partial(_v_sustain, harm=_SAW[:30], attack=0.005, release=0.05, decay=0.4, sustain=0.6,
                           vib=0.008, vib_rate=5.0),
    # plucked strings (Karplus–Strong)
    "guitar": partial(_v_pluck, tau=1.3, bright=0.55),
    "guitar_muted": partial(_v_pluck, tau=0.12, bright=0.4, max_len=0.3),
    "banjo": partial(_v_pluck, tau=0.45, bright=0.95, mix=0.7, max_len=1.0),
    "guitar_clean_lead": partial(_v_pluck, tau=1.0, bright=0.8),
    "sub808": _v_sub808,
}.items():
    _register_voice(_name, _fn)


# ---------------------------------------------------------------------------------------------
# Drum kit: one set of samples per clip; lanes of a pattern name a sample
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DrumKit:
    """Drum-sample parameters (each clip jitters them a little)."""

    kick_hz: float = 52.0  # settled pitch of the kick
    kick_decay: float = 0.25
    kick_click: float = 0.3
    snare_hz: float = 190.0
    snare_decay: float = 0.16
    snare_snappy: float = 0.7  # noise share of the snare
    brushes: bool = False  # soft swishy snare instead of a crack
    hat_decay: float = 0.045
    p_sound: str = "rim"  # what lane "P" plays: "rim" or "clap"


def _metal_noise(sr: int, n: int, rng, base: float) -> np.ndarray:
    """808-style metallic noise: six detuned square waves, plus a little white noise."""
    t = np.arange(n, dtype=np.float32) / sr
    ratios = np.array([1.0, 1.48, 1.8, 2.54, 2.63, 3.9])
    f = base * ratios * (1 + 0.02 * rng.uniform(-1, 1, 6))
    y = 0.6 * rng.standard_normal(n, dtype=np.float32)
    acc = np.zeros(n, dtype=np.int32)
    for fk, ph in zip(f, rng.uniform(0, 1, 6)):
        acc += (t * np.float32(2 * fk) + np.float32(2 * ph)).astype(np.int32) & 1  # square wave as 0/1
    return y + (1.0 - acc.astype(np.float32) / 3.0)


def _render_kit(kit: DrumKit, sr: int, rng: np.random.Generator, needed: set[str]) -> dict[str, np.ndarray]:
    """Peak-normalised float32 samples for the drum sounds in ``needed`` (kick and snare always)."""
    j = lambda: 1.0 + 0.08 * rng.uniform(-1, 1)  # noqa: E731 - per-clip tuning jitter
    out: dict[str, np.ndarray] = {}

    # kick: sine with fast pitch drop + click
    n = int(kit.kick_decay * 5 * sr)
    t = np.arange(n) / sr
    f_end = kit.kick_hz * j()
    f = f_end + 3.0 * f_end * np.exp(-t / 0.03)
    y = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / (kit.kick_decay * j()))
    y += kit.kick_click * rng.standard_normal(n) * np.exp(-t / 0.003)
    out["kick"] = np.tanh(1.5 * y)

    # snare: tuned body + band-passed noise (or a brush swish)
    n = int(max(kit.snare_decay, 0.1) * 5 * sr)
    t = np.arange(n) / sr
    sh = kit.snare_hz * j()
    body = np.sin(2 * np.pi * sh * t) * np.exp(-t / 0.05) + 0.5 * np.sin(2 * np.pi * 1.6 * sh * t) * np.exp(-t / 0.03)
    nz = _filt(rng.standard_normal(n), "bandpass", (1200.0, 9000.0), sr)
    if kit.brushes:
        env = np.minimum(1.0, t / 0.012) * np.exp(-t / (kit.snare_decay * j()))
        out["snare"] = 0.15 * body * np.exp(-t / 0.03) + 1.2 * nz * env
    else:
        snap = nz * np.exp(-t / (kit.snare_decay * j()))
        out["snare"] = (1 - kit.snare_snappy) * body + kit.snare_snappy * 1.5 * snap

    # hats / cymbals
    for name, decay, base, lo in (("hat", kit.hat_decay, 320.0, 6000.0), ("ohat", 0.28, 320.0, 5000.0),
                                   ("ride", 0.9, 380.0, 3000.0), ("crash", 1.3, 300.0, 3500.0)):
        if name not in needed:
            continue
        n = int(min(decay * 4, 2.0) * sr)
        t = np.arange(n) / sr
        y = _filt(_metal_noise(sr, n, rng, base * j()), "highpass", lo, sr)
        env = np.exp(-t / (decay * j()))
        if name == "ride":  # add a bell-like ping so the ride reads as "ding"
            y = 0.6 * y + 0.5 * np.sin(2 * np.pi * 2900 * j() * t) * np.exp(-t / 0.4)
        out[name] = _fade_out((y * env).astype(np.float32), int(0.05 * sr))

    # rim click and hand clap
    if "rim" in needed:
        n = int(0.08 * sr)
        t = np.arange(n) / sr
        nz = _filt(rng.standard_normal(n), "highpass", 2000.0, sr)
        out["rim"] = (np.sin(2 * np.pi * 1700 * j() * t) + 0.6 * nz) * np.exp(-t / 0.012)
    if "clap" in needed:
        n = int(0.4 * sr)
        t = np.arange(n) / sr
        nz = _filt(rng.standard_normal(n), "bandpass", (900.0, 5000.0), sr)
        env = np.exp(-t / 0.1)
        for k in range(3):  # three quick flams before the tail
            env = env + np.exp(-np.maximum(t - 0.011 * k, 0) / 0.004) * (t >= 0.011 * k)
        out["clap"] = 0.7 * nz * env

    peak = {k: float(np.abs(v).max()) for k, v in out.items()}
    return {k: (v / max(peak[k], 1e-9)).astype(np.float32) for k, v in out.items()}


_LANES = {"K": "kick", "S": "snare", "H": "hat", "O": "ohat", "R": "ride", "C": "crash"}
_VEL = {"X": 1.0, "x": 0.7, "o": 0.35, ".": 0.0}


def pattern(**lanes: str) -> tuple[tuple[str, str], ...]:
    """A drum pattern: lane letter → one bar of 16 sixteenth-steps, e.g. ``K="X...X...X...X..."``.

    Lanes: K kick, S snare, H closed hat, O open hat, R ride, C crash, P rim/clap (per kit).
    Velocity characters: ``X`` accent, ``x`` normal, ``o`` ghost, ``.`` rest.
    """
    for lane, steps in lanes.items():
        if lane not in _LANES and lane != "P":
            raise ValueError(f"unknown drum lane {lane!r}")
        if len(steps) != 16 or set(steps) - set(_VEL):
            raise ValueError(f"lane {lane}: need 16 characters from 'Xxo.' (got {steps!r})")
    return tuple(sorted(lanes.items()))


# ---------------------------------------------------------------------------------------------
# Harmony: scales and roman-numeral progressions
# ---------------------------------------------------------------------------------------------

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "major_pent": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
}

_NUMERAL = {"i": 0, "ii": 2, "iii": 4, "iv": 5, "v": 7, "vi": 9, "vii": 11}
_QUALITY = {
    "": None, "5": (0, 7, 12), "7": None, "9": None, "maj7": (0, 4, 7, 11), "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10), "6": (0, 4, 7, 9), "sus4": (0, 5, 7), "dim": (0, 3, 6), "maj9": (0, 4, 7, 11, 14),
}
_CHORD_RE = re.compile(r"^([b#]?)(vii|vi|v|iv|iii|ii|i)(.*)$", re.IGNORECASE)


def _parse_chord(sym: str) -> tuple[int, tuple[int, ...]]:
    """``"bVII7"`` → (semitones above the key, chord intervals). Lower-case numeral = minor."""
    m = _CHORD_RE.match(sym)
    if not m or m.group(3) not in _QUALITY:
        raise ValueError(f"bad chord symbol {sym!r}")
    acc, num, q = m.groups()
    root = _NUMERAL[num.lower()] + {"": 0, "b": -1, "#": 1}[acc]
    minor = num.islower()
    if q == "7":
        iv = (0, 3, 7, 10) if minor else (0, 4, 7, 10)
    elif q == "9":
        iv = (0, 3, 7, 10, 14) if minor else (0, 4, 7, 10, 14)
    elif q == "":
        iv = (0, 3, 7) if minor else (0, 4, 7)
    else:
        iv = _QUALITY[q]
    return root % 12, iv


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """One instrument track: a note-placing ``style`` (key of STYLES) played on one of ``voices``."""

    style: str
    voices: tuple[str, ...]
    register: tuple[int, int]  # MIDI range the part is voiced into
    gain: tuple[float, float] = (0.8, 1.0)  # RMS level range in the mix (relative)
    prob: float = 1.0  # chance the part plays in a given clip
    density: float = 0.5  # style-specific: note probability per grid step
    step: float = 0.5  # grid in beats (0.5 = 8ths, 0.25 = 16ths)
    length: float = 1.0  # articulation: fraction of the gap to the next note
    drive: tuple[float, float] = (0.0, 0.0)  # tanh overdrive amount range (0 = clean)
    cutoff: float | None = None  # low-pass after the drive (amp/cabinet), Hz


@dataclass(frozen=True)
class GenreRecipe:
    """Every musical parameter of one genre; :func:`synth_clip` samples a clip from it."""

    bpm: tuple[float, float]
    swing: tuple[float, float] = (0.5, 0.5)  # fraction of the swing cell where the off-step falls
    swing_cell: float = 1.0  # beats per swing cell: 1.0 = swung 8ths, 0.5 = swung 16ths
    rubato: float = 0.0  # relative tempo wander
    jitter_ms: float = 4.0  # timing humanisation (std)
    kit: DrumKit | None = None
    patterns: tuple[tuple[tuple[str, str], ...], ...] = ()
    drum_gain: tuple[float, float] = (0.8, 1.0)
    crash_every: int = 0  # bars between crashes (0: none)
    harmony: tuple[tuple[str, str], ...] = ()  # (scale name, progression)
    chord_beats: tuple[int, ...] = (4,)
    parts: tuple[Part, ...] = ()
    snr_db: tuple[float, float] = (40.0, 55.0)  # hiss level below the mix RMS
    crackle: float = 0.0  # chance of vinyl crackle
    tone_hz: tuple[float, float] = (7000.0, 10000.0)  # master low-pass range
    reverb: tuple[float, float] = (0.05, 0.2)


GENRES: dict[str, GenreRecipe] = {}


def register_genre(name: str) -> Callable[[Callable[[], GenreRecipe]], Callable[[], GenreRecipe]]:
    """Decorator: register the recipe returned by the decorated factory under ``name``."""

    def deco(factory: Callable[[], GenreRecipe]) -> Callable[[], GenreRecipe]:
        if name in GENRES:
            raise ValueError(f"genre {name!r} registered twice")
        recipe = factory()
        for part in recipe.parts:
            if part.style not in STYLES or any(v not in VOICES for v in part.voices):
                raise ValueError(f"{name}: unknown style/voice in {part}")
        for scale, prog in recipe.harmony:
            if scale not in SCALES:
                raise ValueError(f"{name}: unknown scale {scale!r}")
            for sym in prog.split():
                _parse_chord(sym)
        GENRES[name] = recipe
        return factory

    return deco


# ---------------------------------------------------------------------------------------------
# Clip context and note-placing styles
# ---------------------------------------------------------------------------------------------

class Note(NamedTuple):
    pos: float  # onset, beats
    dur: float  # beats
    midi: float
    vel: float
    offset: float = 0.0  # extra onset offset in seconds (strum spread)


@dataclass
class _Ctx:
    sr: int
    rng: np.random.Generator
    beat_times: np.ndarray  # seconds of beat k, k = 0..n_beats
    swing: float
    swing_cell: float
    key: int
    scale: tuple[int, ...]
    chords: list[tuple[float, float, int, tuple[int, ...]]]  # (start beat, beats, root pc, intervals)
    kick_beats: list[float] = field(default_factory=list)

    @property
    def n_beats(self) -> int:
        return len(self.beat_times) - 1

    def time(self, pos: np.ndarray | float) -> np.ndarray:
        """Beat position → seconds, applying swing then the (possibly rubato) tempo map."""
        pos = np.asarray(pos, dtype=np.float64)
        c = self.swing_cell
        q, r = np.divmod(pos, c)
        r = r / c
        s = self.swing
        warped = np.where(r < 0.5, r * 2 * s, s + (r - 0.5) * 2 * (1 - s))
        return np.interp(q * c + warped * c, np.arange(len(self.beat_times)), self.beat_times)

    def chord_at(self, beat: float) -> tuple[float, float, int, tuple[int, ...]]:
        starts = [c[0] for c in self.chords]
        return self.chords[max(0, bisect_right(starts, beat) - 1)]

    def scale_notes(self, lo: int, hi: int) -> np.ndarray:
        pcs = {(self.key + s) % 12 for s in self.scale}
        return np.array([m for m in range(lo, hi + 1) if m % 12 in pcs])


def _lowest(pc: int, lo: int) -> int:
    """Lowest MIDI note >= lo with pitch class pc."""
    return lo + (pc - lo) % 12


def _voicing(root_pc: int, iv: Sequence[int], lo: int, hi: int, n_max: int = 5) -> list[int]:
    base = _lowest(root_pc, lo)
    notes = []
    for i in iv[:n_max]:
        m = base + i
        while m > hi:
            m -= 12
        while m < lo:
            m += 12
        notes.append(m)
    return sorted(set(notes))


StyleFn = Callable[[_Ctx, Part, np.random.Generator], list[Note]]
STYLES: Registry[StyleFn] = Registry("style")
register_style = STYLES.register


def _vel(rng, lo=0.75, hi=1.0) -> float:
    return float(rng.uniform(lo, hi))


@register_style("sustain")
def _st_sustain(ctx, part, rng):
    """Whole chords held for their full length (strings, pads, organ)."""
    lo, hi = part.register
    out = []
    for start, beats, root, iv in ctx.chords:
        for m in _voicing(root, iv, lo, hi):
            out.append(Note(start, beats * part.length, m, _vel(rng, 0.7, 0.9)))
    return out


@register_style("root_sustain")
def _st_root_sustain(ctx, part, rng):
    """Chord root held (cello / contrabass under an orchestra)."""
    lo, _ = part.register
    return [Note(s, b * part.length, _lowest(r, lo), _vel(rng)) for s, b, r, _ in ctx.chords]


@register_style("pulse")
def _st_pulse(ctx, part, rng):
    """Chord repeated on every grid step, accented on beats."""
    lo, hi = part.register
    out = []
    for p in np.arange(0, ctx.n_beats, part.step):
        if rng.random() > part.density and p % 1:
            continue
        _, _, root, iv = ctx.chord_at(p)
        v = _vel(rng, 0.8, 1.0) if p % 1 == 0 else _vel(rng, 0.45, 0.7)
        out += [Note(p, part.step * part.length, m, v) for m in _voicing(root, iv, lo, hi, 4)]
    return out


@register_style("arpeggio")
def _st_arpeggio(ctx, part, rng):
    """Broken chords over two octaves (up, up-down or Alberti figure), one note per grid step."""
    lo, hi = part.register
    shape = rng.integers(3)
    out = []
    for start, beats, root, iv in ctx.chords:
        chord = _voicing(root, iv, lo, hi, 4)
        tones = sorted(set(chord) | {m + 12 for m in chord if m + 12 <= hi})
        if shape == 0:
            seq = tones
        elif shape == 1:
            seq = tones + tones[-2:0:-1]
        else:
            seq = [tones[0], tones[-1], tones[len(tones) // 2], tones[-1]]
        k = 0
        for p in np.arange(start, start + beats - 1e-9, part.step):
            v = _vel(rng, 0.55, 0.85) + (0.15 if p % 1 == 0 else 0.0)
            out.append(Note(p, part.step * 1.5 * part.length, seq[k % len(seq)], v))
            k += 1
    return out


_STRUMS = ("D.D.DUDU", "D.DUD.DU", "D..UD.DU", "D.D.D.DU", "DUDUDUDU")


@register_style("strum")
def _st_strum(ctx, part, rng):
    """Guitar strums on 8ths: each stroke spreads its strings by a few ms (down = low→high)."""
    lo, hi = part.register
    pats = [_STRUMS[i] for i in rng.choice(len(_STRUMS), 2, replace=False)]
    spread = rng.uniform(0.008, 0.018)
    out = []
    for bar in range(ctx.n_beats // 4):
        pat = pats[bar % 2 if rng.random() < 0.3 else 0]
        hits = [i for i, c in enumerate(pat) if c != "."] + [8]
        for a, b in zip(hits[:-1], hits[1:]):
            p = bar * 4 + a * 0.5
            _, _, root, iv = ctx.chord_at(p)
            strings = _voicing(root, iv, lo, lo + 12) + _voicing(root, iv, lo + 12, hi)
            strings = sorted(set(strings))[:6]
            up = pat[a] == "U"
            order = strings[::-1][:4] if up else strings
            v = _vel(rng, 0.45, 0.6) if up else _vel(rng, 0.8, 1.0)
            for i, m in enumerate(order):
                out.append(Note(p, (b - a) * 0.5 * part.length, m, v * (0.93 ** i), i * spread))
    return out


@register_style("offbeat")
def _st_offbeat(ctx, part, rng):
    """Reggae skank: short chords on every off-beat; density > 0.5 adds the organ 'bubble' 16th."""
    lo, hi = part.register
    out = []
    for b in range(ctx.n_beats):
        _, _, root, iv = ctx.chord_at(b)
        ch = _voicing(root, iv, lo, hi, 4)
        out += [Note(b + 0.5, part.length, m, _vel(rng, 0.85, 1.0)) for m in ch]
        if part.density > 0.5:
            out += [Note(b + 0.75, part.length, m, _vel(rng, 0.5, 0.7)) for m in ch]
    return out


_STABS = ((0, 1.5, 2.5), (0.5, 1.5, 3), (0, 0.75, 2, 3.5), (1.5, 2.5, 3.5), (0, 2.5), (0, 1, 1.75, 3))


@register_style("stabs")
def _st_stabs(ctx, part, rng):
    """Syncopated chord stabs from a 2-bar template repeated (disco strings, hip-hop keys loop)."""
    lo, hi = part.register
    t1, t2 = (_STABS[i] for i in rng.choice(len(_STABS), 2, replace=False))
    out = []
    for bar in range(ctx.n_beats // 4):
        tmpl = t1 if bar % 2 == 0 else t2
        for i, off in enumerate(tmpl):
            p = bar * 4 + off
            nxt = tmpl[i + 1] if i + 1 < len(tmpl) else 4.0
            d = (nxt - off) * part.length if rng.random() < part.density else min(0.4, nxt - off)
            _, _, root, iv = ctx.chord_at(p)
            out += [Note(p, d, m, _vel(rng, 0.75, 1.0)) for m in _voicing(root, iv, lo, hi, 4)]
    return out


@register_style("comp")
def _st_comp(ctx, part, rng):
    """Jazz comping: 1–3 syncopated rootless voicings per bar."""
    lo, hi = part.register
    out = []
    for bar in range(ctx.n_beats // 4):
        k = int(rng.integers(1, 4))
        slots = np.sort(rng.choice(np.arange(0, 4, 0.5), k, replace=False))
        for p in slots:
            _, _, root, iv = ctx.chord_at(bar * 4 + p)
            shell = _voicing((root + iv[1]) % 12, [(i - iv[1]) % 12 for i in iv[1:]], lo, hi, 4)
            out += [Note(bar * 4 + p, rng.uniform(0.3, 1.0), m, _vel(rng, 0.6, 0.9)) for m in shell]
    return out


@register_style("chug")
def _st_chug(ctx, part, rng):
    """Power chords (root, 5th, octave) on the grid, palm-muted except accents — rock/metal riffs."""
    lo, _ = part.register
    out = []
    skip_mask = rng.random(int(round(4 / part.step))) > part.density  # a repeating rhythmic figure
    for p in np.arange(0, ctx.n_beats, part.step):
        i = int(round((p % 4) / part.step))
        if skip_mask[i] and i != 0:
            continue
        _, _, root, _ = ctx.chord_at(p)
        r = _lowest(root, lo)
        ring = i == 0 and rng.random() < 0.35
        d = (1.0 if ring else part.step * part.length)
        v = 1.0 if (p % 1 == 0) else _vel(rng, 0.7, 0.9)
        out += [Note(p, d, m, v) for m in (r, r + 7, r + 12)]
    return out


@register_style("bass_root")
def _st_bass_root(ctx, part, rng):
    """Root on every grid step, occasional octave jump."""
    lo, _ = part.register
    out = []
    for p in np.arange(0, ctx.n_beats, part.step):
        if rng.random() > part.density and p % 2:
            continue
        _, _, root, _ = ctx.chord_at(p)
        m = _lowest(root, lo) + (12 if rng.random() < 0.1 else 0)
        out.append(Note(p, part.step * part.length, m, _vel(rng, 0.8, 1.0)))
    return out


@register_style("bass_rootfifth")
def _st_bass_rootfifth(ctx, part, rng):
    """Country 'boom': root on beat 1, fifth on beat 3 (with walk-up pickups)."""
    lo, _ = part.register
    out = []
    for bar in range(ctx.n_beats // 4):
        _, _, root, _ = ctx.chord_at(bar * 4)
        r = _lowest(root, lo)
        fifth = r - 5 if r - 5 >= lo else r + 7  # prefer the fifth below
        out += [Note(bar * 4, 1.5 * part.length, r, _vel(rng)), Note(bar * 4 + 2, 1.5 * part.length, fifth, _vel(rng))]
        if rng.random() < part.density:
            out.append(Note(bar * 4 + 3.5, 0.45, r + int(rng.choice((2, 4, 5))), _vel(rng, 0.5, 0.7)))
    return out


@register_style("bass_walk")
def _st_bass_walk(ctx, part, rng):
    """Jazz walking bass: quarter notes, chord tones, chromatic approach into the next chord."""
    lo, hi = part.register
    notes = ctx.scale_notes(lo, hi)
    out = []
    prev = _lowest(ctx.chords[0][2], lo)
    for b in range(ctx.n_beats):
        start, beats, root, iv = ctx.chord_at(b)
        r = _lowest(root, lo)
        if r + 12 <= hi and abs(r + 12 - prev) < abs(r - prev):
            r += 12
        if b == start:
            m = r
        elif b == start + beats - 1:  # approach the next root by a half step
            nxt = _lowest(ctx.chord_at(b + 1)[2], lo)
            if nxt + 12 <= hi and abs(nxt + 12 - prev) < abs(nxt - prev):
                nxt += 12
            m = nxt + (1 if rng.random() < 0.5 else -1)
        else:
            cands = [r + i for i in iv if lo <= r + i <= hi] + [n for n in notes if abs(n - prev) <= 2 and n != prev]
            m = int(rng.choice(cands))
        out.append(Note(b, 0.95 * part.length, m, _vel(rng, 0.8, 1.0)))
        if rng.random() < part.density * 0.2:  # swung ghost pickup
            out.append(Note(b + 0.5, 0.4, m, _vel(rng, 0.35, 0.5)))
        prev = m
    return out


@register_style("boogie")
def _st_boogie(ctx, part, rng):
    """Blues boogie figure in (swung) 8ths: root-3-5-6-b7-6-5-3."""
    lo, _ = part.register
    fig = (0, 0, 4, 4, 7, 7, 9, 9) if rng.random() < 0.5 else (0, 4, 7, 9, 10, 9, 7, 4)
    out = []
    for p in np.arange(0, ctx.n_beats, 0.5):
        _, _, root, _ = ctx.chord_at(p)
        i = int(round((p % 4) * 2))
        v = _vel(rng, 0.85, 1.0) if i % 2 == 0 else _vel(rng, 0.55, 0.75)
        out.append(Note(p, 0.5 * part.length, _lowest(root, lo) + fig[i], v))
    return out


@register_style("shuffle_riff")
def _st_shuffle_riff(ctx, part, rng):
    """Blues rhythm guitar: root+5th / root+6th dyads alternating on swung 8ths."""
    lo, _ = part.register
    upper = (7, 7, 9, 9, 7, 7, 9, 9) if rng.random() < 0.6 else (7, 7, 9, 9, 10, 10, 9, 9)
    out = []
    for p in np.arange(0, ctx.n_beats, 0.5):
        _, _, root, _ = ctx.chord_at(p)
        r = _lowest(root, lo)
        i = int(round((p % 4) * 2))
        v = _vel(rng, 0.85, 1.0) if i % 2 == 0 else _vel(rng, 0.5, 0.7)
        out += [Note(p, 0.5 * part.length, r, v), Note(p, 0.5 * part.length, r + upper[i], v)]
    return out


@register_style("bass_octave")
def _st_bass_octave(ctx, part, rng):
    """Disco octave bass: root / octave alternating on 8ths."""
    lo, _ = part.register
    out = []
    for p in np.arange(0, ctx.n_beats, 0.5):
        _, _, root, _ = ctx.chord_at(p)
        r = _lowest(root, lo)
        up = int(round(p * 2)) % 2
        out.append(Note(p, 0.5 * part.length, r + 12 * up, _vel(rng, 0.85, 1.0) if not up else _vel(rng, 0.6, 0.8)))
    return out


@register_style("bass_kick")
def _st_bass_kick(ctx, part, rng):
    """808 bass: a long sub note on every kick, held to the next kick."""
    lo, _ = part.register
    hits = sorted(set(ctx.kick_beats)) or list(np.arange(0, ctx.n_beats, 2.0))
    out = []
    for a, b in zip(hits, hits[1:] + [hits[-1] + 2.0]):
        _, _, root, _ = ctx.chord_at(a)
        m = _lowest(root, lo) + (7 if rng.random() < 0.15 else 0)
        out.append(Note(a, min(b - a, 2.0) * part.length, m, _vel(rng, 0.85, 1.0)))
    return out


_REGGAE_BASS = (
    ((0, 0.75, 0), (1, 0.5, 0), (1.5, 0.5, 7), (2.5, 0.5, 12), (3, 0.75, 10)),
    ((0.5, 0.5, 0), (1, 1.0, 0), (2.5, 0.5, 7), (3, 0.5, 3), (3.5, 0.5, 5)),
    ((0, 1.5, 0), (2, 0.5, 7), (2.5, 0.5, 5), (3, 1.0, 3)),
    ((1, 0.5, 0), (1.5, 0.5, 0), (2, 1.0, 7), (3.5, 0.5, 12)),
)


@register_style("bass_reggae")
def _st_bass_reggae(ctx, part, rng):
    """Deep melodic reggae bass lines with rests (often leaving beat 1 empty)."""
    lo, _ = part.register
    figs = [_REGGAE_BASS[i] for i in rng.choice(len(_REGGAE_BASS), 2, replace=False)]
    scale = {(ctx.key + s) % 12 for s in ctx.scale}
    out = []
    for bar in range(ctx.n_beats // 4):
        for off, d, iv in figs[bar % 2]:
            _, _, root, _ = ctx.chord_at(bar * 4 + off)
            m = _lowest(root, lo) + iv
            if m % 12 not in scale:
                m -= 1
            out.append(Note(bar * 4 + off, d * part.length, m, _vel(rng, 0.8, 1.0)))
    return out


@register_style("melody")
def _st_melody(ctx, part, rng):
    """Random-walk melody in the clip's scale: chord tones on strong beats, phrases with rests."""
    lo, hi = part.register
    notes = ctx.scale_notes(lo, hi)
    i = len(notes) // 2
    onsets = []
    phrase = 8.0 if rng.random() < 0.5 else 4.0
    for p in np.arange(0, ctx.n_beats, part.step):
        in_phrase = (p % (phrase * 2)) < phrase * 1.5  # rest for the last quarter of each phrase pair
        strong = p % 1 == 0
        if in_phrase and rng.random() < part.density * (1.3 if strong else 0.8):
            onsets.append(p)
    out = []
    for a, b in zip(onsets, onsets[1:] + [onsets[-1] + 1.0] if onsets else []):
        step = int(rng.choice((-2, -1, -1, 1, 1, 2, 0, -3, 3)))
        i = int(np.clip(i + step, 0, len(notes) - 1))
        if a % 1 == 0:  # snap to the nearest chord tone on beats
            _, _, root, iv = ctx.chord_at(a)
            pcs = {(root + x) % 12 for x in iv}
            near = [j for j in range(max(0, i - 2), min(len(notes), i + 3)) if notes[j] % 12 in pcs]
            if near:
                i = min(near, key=lambda j: abs(j - i))
        d = min(b - a, 2.0) * part.length
        out.append(Note(a, d, float(notes[i]), _vel(rng, 0.7, 1.0) if a % 1 == 0 else _vel(rng, 0.55, 0.85)))
    return out


# ---------------------------------------------------------------------------------------------
# The ten genres
# ---------------------------------------------------------------------------------------------

_BACKBEAT = "....X.......X..."
_EIGHTHS = "x.x.x.x.x.x.x.x."


@register_genre("blues")
def _blues() -> GenreRecipe:
    return GenreRecipe(
        bpm=(68, 100), swing=(0.62, 0.69), swing_cell=1.0, jitter_ms=6,
        kit=DrumKit(kick_hz=55, kick_decay=0.28, snare_hz=200, snare_decay=0.18, hat_decay=0.05),
        patterns=(
            pattern(K="X.......x.......", S=_BACKBEAT, H="X.x.X.x.X.x.X.x."),
            pattern(K="X.....x.X.......", S="....X.......X..o", R="X.x.X.x.X.x.X.x."),
            pattern(K="X.......X.....x.", S=_BACKBEAT, H="x.o.x.o.x.o.x.o."),
        ),
        harmony=(
            ("blues", "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7"),
            ("blues", "I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 I7"),
            ("minor_pent", "i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7"),
        ),
        parts=(
            Part("boogie", ("bass_electric", "bass_upright"), (33, 52), (0.8, 1.0), length=0.9),
            Part("shuffle_riff", ("guitar", "lead_guitar"), (40, 60), (0.5, 0.8), prob=0.75, length=0.8,
                 drive=(2.0, 4.0), cutoff=3000),
            Part("comp", ("piano", "organ"), (55, 74), (0.4, 0.7), prob=0.6),
            Part("melody", ("harmonica", "lead_guitar", "sax"), (58, 79), (0.6, 1.0), prob=0.85, density=0.45,
                 step=0.5, drive=(0.0, 2.0), cutoff=6000),
        ),
        snr_db=(30, 45), tone_hz=(3500, 7500), reverb=(0.1, 0.25),
    )


@register_genre("classical")
def _classical() -> GenreRecipe:
    return GenreRecipe(
        bpm=(50, 96), rubato=0.06, jitter_ms=10,
        harmony=(
            ("major", "I IV V I"), ("major", "I vi ii V"), ("major", "I V vi iii IV I IV V"),
            ("harmonic_minor", "i iv V i"), ("harmonic_minor", "i VI iv V"), ("major", "I ii7 V7 I"),
        ),
        chord_beats=(2, 4),
        parts=(
            Part("sustain", ("strings",), (55, 79), (0.4, 1.0), length=1.05),
            Part("root_sustain", ("cello", "strings"), (36, 50), (0.4, 0.8), prob=0.85, length=1.05),
            Part("arpeggio", ("piano",), (48, 84), (0.6, 1.0), prob=0.65, step=0.25),
            Part("melody", ("violin", "flute", "piano"), (67, 93), (0.6, 1.0), density=0.5, step=0.5, length=1.05),
        ),
        snr_db=(45, 60), tone_hz=(7000, 10500), reverb=(0.25, 0.45),
    )


@register_genre("country")
def _country() -> GenreRecipe:
    return GenreRecipe(
        bpm=(96, 140), swing=(0.5, 0.55), jitter_ms=4,
        kit=DrumKit(kick_hz=60, kick_decay=0.18, kick_click=0.15, snare_decay=0.14, brushes=True, hat_decay=0.04),
        patterns=(
            pattern(K="X.......X.......", P=_BACKBEAT, H=_EIGHTHS),
            pattern(K="X.......X.......", S="ooooXoooooooXooo"),
            pattern(K="X.....x.X.......", S=_BACKBEAT, H="x.o.x.o.x.o.x.o."),
        ),
        harmony=(
            ("major_pent", "I IV V I"), ("major_pent", "I I IV I V V I I"), ("major_pent", "I V IV I"),
            ("major_pent", "I IV I V"),
        ),
        parts=(
            Part("bass_rootfifth", ("bass_electric", "bass_upright"), (36, 52), (0.7, 1.0), density=0.5),
            Part("strum", ("guitar",), (40, 67), (0.7, 1.0), length=1.0),
            Part("arpeggio", ("banjo",), (55, 79), (0.4, 0.7), prob=0.5, step=0.25),
            Part("melody", ("fiddle", "guitar_clean_lead", "banjo"), (62, 86), (0.5, 0.9), prob=0.8,
                 density=0.5, step=0.5),
        ),
        snr_db=(35, 50), tone_hz=(6500, 11000), reverb=(0.08, 0.2),
    )


@register_genre("disco")
def _disco() -> GenreRecipe:
    return GenreRecipe(
        bpm=(112, 130), jitter_ms=2,
        kit=DrumKit(kick_hz=55, kick_decay=0.22, kick_click=0.4, p_sound="clap", hat_decay=0.035),
        patterns=(
            pattern(K="X...X...X...X...", P=_BACKBEAT, O="..x...x...x...x.", H="x.o.x.o.x.o.x.o."),
            pattern(K="X...X...X...X...", S=_BACKBEAT, O="..X...X...X...X.", H="xoxoxoxoxoxoxoxo"),
            pattern(K="X...X...X...X...", P=_BACKBEAT, O="..x...x...x...x."),
        ),
        crash_every=8,
        harmony=(("dorian", "i7 IV7"), ("minor", "i7 iv7 bVIImaj7 bIIImaj7"), ("major", "ii7 V7 Imaj7 vi7"),
                 ("dorian", "i7 i7 IV7 IV7")),
        chord_beats=(4, 8),
        parts=(
            Part("bass_octave", ("bass_synth", "bass_electric"), (33, 50), (0.9, 1.1), length=0.8),
            Part("stabs", ("strings", "brass"), (60, 84), (0.5, 0.9), prob=0.8, density=0.3),
            Part("pulse", ("guitar_muted",), (60, 76), (0.3, 0.6), prob=0.6, step=0.25, density=0.8, length=0.5),
            Part("pulse", ("epiano", "organ"), (55, 74), (0.3, 0.5), prob=0.35, step=0.5, density=0.5, length=0.6),
            Part("melody", ("synth_lead", "strings", "brass"), (65, 88), (0.5, 0.8), prob=0.5, density=0.4),
        ),
        snr_db=(40, 55), tone_hz=(8000, 11000), reverb=(0.1, 0.2),
    )


@register_genre("hiphop")
def _hiphop() -> GenreRecipe:
    return GenreRecipe(
        bpm=(78, 98), swing=(0.5, 0.62), swing_cell=0.5, jitter_ms=3,
        kit=DrumKit(kick_hz=48, kick_decay=0.35, kick_click=0.2, snare_hz=180, snare_decay=0.2, snare_snappy=0.8,
                    hat_decay=0.03),
        patterns=(
            pattern(K="X......X..X.....", S=_BACKBEAT, H=_EIGHTHS),
            pattern(K="X.X.......X..x..", S="....X..o....X...", H="xxxxxxxxxxxxxxxx"),
            pattern(K="X......X.X......", P=_BACKBEAT, S=_BACKBEAT, H="x.xox.x.x.xox.x."),
        ),
        harmony=(("minor", "i7 bVImaj7"), ("minor", "i7 iv7"), ("dorian", "i7 i7 IV7 IV7"),
                 ("minor", "i bVII bVI bVII")),
        chord_beats=(4, 8),
        parts=(
            Part("bass_kick", ("sub808",), (28, 43), (1.0, 1.3)),
            Part("stabs", ("epiano", "piano", "vibes"), (55, 76), (0.5, 0.8), density=0.7, length=0.9),
            Part("melody", ("bells", "flute", "pluck_synth"), (67, 88), (0.3, 0.6), prob=0.55, density=0.25, step=0.5),
        ),
        snr_db=(28, 42), crackle=0.7, tone_hz=(3000, 6000), reverb=(0.0, 0.1),
    )


@register_genre("jazz")
def _jazz() -> GenreRecipe:
    return GenreRecipe(
        bpm=(100, 200), swing=(0.6, 0.7), swing_cell=1.0, jitter_ms=7,
        kit=DrumKit(kick_hz=65, kick_decay=0.2, kick_click=0.05, snare_decay=0.2, brushes=True, hat_decay=0.03),
        patterns=(
            pattern(R="X...X.x.X...X.x.", H="....x.......x...", K="o...o...o...o..."),
            pattern(R="X...X.x.X...X.x.", H="....x.......x...", S="......o.......o."),
            pattern(R="x...X.x.x...X.x.", H="....x.......x...", S="..o.......o....."),
        ),
        harmony=(("major", "ii7 V7 Imaj7 Imaj7"), ("major", "Imaj7 vi7 ii7 V7"), ("major", "iii7 VI7 ii7 V7"),
                 ("dorian", "i7 i7 IV7 IV7"), ("harmonic_minor", "iim7b5 V7 i7 i7")),
        chord_beats=(4, 2),
        parts=(
            Part("bass_walk", ("bass_upright",), (31, 55), (0.9, 1.1), density=0.5),
            Part("comp", ("piano", "epiano"), (52, 74), (0.5, 0.8)),
            Part("melody", ("sax", "brass", "vibes"), (58, 84), (0.6, 0.9), prob=0.8, density=0.65, step=0.5),
        ),
        snr_db=(35, 50), tone_hz=(6000, 9000), reverb=(0.15, 0.3),
    )


@register_genre("metal")
def _metal() -> GenreRecipe:
    return GenreRecipe(
        bpm=(100, 190), jitter_ms=2,
        kit=DrumKit(kick_hz=58, kick_decay=0.12, kick_click=0.8, snare_hz=220, snare_decay=0.15, snare_snappy=0.75,
                    hat_decay=0.04),
        patterns=(
            pattern(K="XxXxXxXxXxXxXxXx", S=_BACKBEAT, H=_EIGHTHS),
            pattern(K="X.XxX.XxX.XxX.Xx", S=_BACKBEAT, R=_EIGHTHS),
            pattern(K="X.x.X.x.X.xxX.x.", S="........X.......", C="X.......X......."),
            pattern(K="XxXxXxXxXxXxXxXx", S="..X...X...X...X.", C="X...X...X...X..."),
        ),
        crash_every=2,
        harmony=(("phrygian", "i5 bII5 i5 i5"), ("minor", "i5 bVI5 bVII5 i5"), ("minor", "i5 i5 bVII5 bVI5"),
                 ("phrygian", "i5 bIII5 bII5 i5")),
        chord_beats=(4, 2),
        parts=(
            Part("chug", ("dist_guitar",), (35, 50), (0.9, 1.1), step=0.25, density=0.85, length=0.6,
                 drive=(8.0, 20.0), cutoff=5500),
            Part("bass_root", ("bass_synth",), (28, 43), (0.5, 0.8), step=0.25, density=0.9, length=0.8,
                 drive=(1.5, 3.0), cutoff=3000),
            Part("melody", ("lead_guitar",), (62, 86), (0.4, 0.7), prob=0.45, density=0.7, step=0.25,
                 drive=(5.0, 12.0), cutoff=6000),
        ),
        snr_db=(30, 45), tone_hz=(9000, 11000), reverb=(0.05, 0.15),
    )


@register_genre("pop")
def _pop() -> GenreRecipe:
    return GenreRecipe(
        bpm=(92, 126), swing=(0.5, 0.52), jitter_ms=1.5,
        kit=DrumKit(kick_hz=52, kick_decay=0.25, kick_click=0.3, p_sound="clap", hat_decay=0.035),
        patterns=(
            pattern(K="X.......X.X.....", P=_BACKBEAT, H=_EIGHTHS),
            pattern(K="X..x..X...X.....", P=_BACKBEAT, S=_BACKBEAT, H="xoxoxoxoxoxoxoxo"),
            pattern(K="X.....X.X.......", P=_BACKBEAT, H="x.x.x.x.x.x.x.x.", O="..............x."),
        ),
        crash_every=8,
        harmony=(("major", "I V vi IV"), ("major", "vi IV I V"), ("major", "I vi IV V"), ("major", "IV I V vi")),
        parts=(
            Part("bass_root", ("bass_synth", "bass_electric"), (33, 50), (0.7, 1.0), step=0.5, density=0.7, length=0.8),
            Part("sustain", ("pad",), (55, 76), (0.4, 0.7), prob=0.6, length=1.02),
            Part("pulse", ("piano", "epiano"), (55, 76), (0.4, 0.7), prob=0.5, step=0.5, density=0.6, length=0.8),
            Part("arpeggio", ("pluck_synth",), (60, 84), (0.3, 0.6), prob=0.5, step=0.25),
            Part("melody", ("synth_lead", "flute"), (62, 81), (0.6, 0.9), prob=0.95, density=0.55, step=0.5),
        ),
        snr_db=(45, 60), tone_hz=(8500, 11000), reverb=(0.1, 0.25),
    )


@register_genre("reggae")
def _reggae() -> GenreRecipe:
    return GenreRecipe(
        bpm=(64, 92), swing=(0.5, 0.58), swing_cell=0.5, jitter_ms=4,
        kit=DrumKit(kick_hz=50, kick_decay=0.3, kick_click=0.1, snare_hz=230, snare_decay=0.12, hat_decay=0.04),
        patterns=(
            pattern(K="........X.......", P="........X.......", H=_EIGHTHS),
            pattern(K="X...X...X...X...", P="........X.......", H="x.xox.xox.xox.xo"),
            pattern(K="X.......X.......", P="....x.......X...", H=_EIGHTHS),
        ),
        harmony=(("major", "I IV"), ("minor", "i iv"), ("minor", "i bVII"), ("major", "I V IV IV"),
                 ("major", "I ii IV V")),
        chord_beats=(4, 8),
        parts=(
            Part("bass_reggae", ("bass_electric", "bass_upright"), (28, 45), (0.9, 1.2), length=0.95, cutoff=1500),
            Part("offbeat", ("guitar_muted", "organ"), (60, 76), (0.7, 1.0), density=0.3, length=0.2),
            Part("offbeat", ("organ",), (55, 72), (0.2, 0.4), prob=0.5, density=0.9, length=0.15),
            Part("melody", ("harmonica", "brass", "flute"), (62, 82), (0.4, 0.7), prob=0.45, density=0.35),
        ),
        snr_db=(35, 50), tone_hz=(6000, 9500), reverb=(0.1, 0.25),
    )


@register_genre("rock")
def _rock() -> GenreRecipe:
    return GenreRecipe(
        bpm=(100, 152), jitter_ms=3,
        kit=DrumKit(kick_hz=55, kick_decay=0.2, kick_click=0.4, snare_hz=200, snare_decay=0.18, hat_decay=0.05),
        patterns=(
            pattern(K="X.......X.X.....", S=_BACKBEAT, H=_EIGHTHS),
            pattern(K="X.X.....X.X.....", S=_BACKBEAT, H="X.x.X.x.X.x.X.x."),
            pattern(K="X.......X.......", S=_BACKBEAT, O=_EIGHTHS),
        ),
        crash_every=4,
        harmony=(("major", "I IV V IV"), ("mixolydian", "I bVII IV I"), ("major", "I V vi IV"),
                 ("minor", "i bVI bVII i")),
        parts=(
            Part("chug", ("dist_guitar",), (40, 57), (0.8, 1.0), step=0.5, density=0.95, length=0.9,
                 drive=(2.5, 6.0), cutoff=5000),
            Part("bass_root", ("bass_electric",), (28, 45), (0.6, 0.9), step=0.5, density=0.9, length=0.85),
            Part("strum", ("guitar",), (40, 67), (0.3, 0.6), prob=0.35, drive=(1.0, 3.0), cutoff=6000),
            Part("melody", ("lead_guitar",), (60, 84), (0.5, 0.8), prob=0.5, density=0.5, step=0.5,
                 drive=(2.0, 5.0), cutoff=6000),
            Part("sustain", ("organ",), (55, 74), (0.2, 0.4), prob=0.25),
        ),
        snr_db=(35, 50), tone_hz=(7000, 10500), reverb=(0.05, 0.2),
    )


GENRE_NAMES: tuple[str, ...] = tuple(GENRES)  # GTZAN order, as registered above
if GENRE_NAMES != ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"):
    raise RuntimeError(f"genre registry out of GTZAN order: {GENRE_NAMES}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _place(buf: np.ndarray, start: int, wav: np.ndarray, gain: float) -> None:
    if start >= len(buf):
        return
    if start < 0:
        wav = wav[-start:]
        start = 0
    end = min(len(buf), start + len(wav))
    if end > start:
        buf[start:end] += gain * wav[: end - start]


def _render_notes(ctx: _Ctx, voice_name: str, notes: list[Note], n: int, jitter: float) -> np.ndarray:
    buf = np.zeros(n, dtype=np.float32)
    if not notes:
        return buf
    fn = VOICES[voice_name]
    rng, sr = ctx.rng, ctx.sr
    pos = np.array([x.pos for x in notes])
    t0 = ctx.time(pos) + np.array([x.offset for x in notes]) + jitter * rng.standard_normal(len(notes))
    t1 = ctx.time(pos + np.array([x.dur for x in notes]))
    cache: dict[tuple[float, int], np.ndarray] = {}
    dur = np.maximum(t1 - t0, 0.04)
    if voice_name in _TRUNCATABLE:
        # struck/plucked: render once per pitch and power-of-two length bucket, then cut + fade
        dq = np.ceil(np.log2(dur / 0.04)).astype(int)
        n_fade = int(0.03 * sr)
        for note, a, q, d in zip(notes, t0, dq, dur):
            k = (note.midi, int(q))
            wav = cache.get(k)
            if wav is None:
                wav = cache[k] = fn(_midi_hz(note.midi), 0.04 * 2.0 ** float(q), sr, rng)
            cut = int(d * sr) + n_fade
            if cut < len(wav):
                wav = wav[:cut].copy()
                _fade_out(wav, n_fade)
            _place(buf, int(round(a * sr)), wav, note.vel)
        return buf
    # sustained: durations quantised on a 4 % log grid so that repeated notes render once per clip
    dq = np.round(np.log(dur) / np.log(1.04)).astype(int)
    for note, a, q in zip(notes, t0, dq):
        k = (note.midi, int(q))
        wav = cache.get(k)
        if wav is None:
            wav = cache[k] = fn(_midi_hz(note.midi), 1.04 ** float(q), sr, rng)
        _place(buf, int(round(a * sr)), wav, note.vel)
    return buf


def _render_drums(ctx: _Ctx, recipe: GenreRecipe, n: int, jitter: float) -> np.ndarray:
    rng, sr = ctx.rng, ctx.sr
    lanes = dict(_LANES, P=recipe.kit.p_sound)
    needed = {lanes[lane] for pat in recipe.patterns for lane, _ in pat} | ({"crash"} if recipe.crash_every else set())
    kit = _render_kit(recipe.kit, sr, rng, needed)
    order = rng.permutation(len(recipe.patterns))
    main, alt = recipe.patterns[order[0]], recipe.patterns[order[-1]]
    hits: list[tuple[float, str, float]] = []
    for bar in range(ctx.n_beats // 4):
        pat = alt if (bar % 4 == 3 and rng.random() < 0.4) else main
        for lane, steps in pat:
            for i, c in enumerate(steps):
                if c != ".":
                    hits.append((bar * 4 + i / 4, lanes[lane], _VEL[c]))
        if recipe.crash_every and bar % recipe.crash_every == 0 and rng.random() < 0.8:
            hits.append((bar * 4, "crash", 0.8))
    ctx.kick_beats = [p for p, s, _ in hits if s == "kick"]
    buf = np.zeros(n, dtype=np.float32)
    if not hits:
        return buf
    t = ctx.time(np.array([h[0] for h in hits])) + jitter * rng.standard_normal(len(hits))
    vel = np.array([h[2] for h in hits]) * rng.uniform(0.85, 1.1, len(hits))
    for (_, name, _), ti, v in zip(hits, t, vel):
        _place(buf, int(round(ti * sr)), kit[name], float(v))
    return buf


def _tempo_map(rng: np.random.Generator, bpm: float, rubato: float, n_beats: int) -> np.ndarray:
    base = 60.0 / bpm
    k = np.arange(n_beats)
    wander = rubato * (np.sin(2 * np.pi * k / rng.uniform(6, 14) + rng.uniform(0, 6.3))
                       + 0.5 * np.sin(2 * np.pi * k / rng.uniform(3, 5) + rng.uniform(0, 6.3)))
    durs = base * (1.0 + wander + 0.004 * rng.standard_normal(n_beats))
    return np.concatenate([[0.0], np.cumsum(durs)])


def _reverb(y: np.ndarray, sr: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Cheap room: ten randomly spaced echo taps (11–150 ms) with an exponentially decaying level."""
    if amount <= 0:
        return y
    wet = np.zeros_like(y)
    for d in np.sort(rng.uniform(0.011, 0.15, 10)):
        k = int(d * sr)
        wet[k:] += np.float32(np.exp(-d / 0.07)) * y[:-k]
    scale = amount * float(np.sqrt(np.mean(y ** 2))) / max(float(np.sqrt(np.mean(wet ** 2))), 1e-9)
    return y + np.float32(scale) * wet


def synth_clip(
    genre: str, seconds: float, sr: int = DEFAULT_SR, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Render one synthetic clip of ``genre``.

    Args:
        genre: one of :data:`GENRE_NAMES`.
        seconds: duration (> 0).
        sr: sample rate in Hz.
        rng: a ``numpy.random.Generator`` (all randomness of the clip comes from it); an ``int``
            seeds a fresh one; ``None`` means seed 0.

    Returns:
        ``np.ndarray`` of dtype float32 and shape ``(round(seconds * sr),)`` (mono), peak-normalised
        to a random level in [0.3, 0.9] (silence-free, never clipping).

    Raises:
        ValueError: unknown ``genre`` (the message lists the known ones), ``seconds <= 0`` or ``sr``
            below 8000 Hz.
    """
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}; known genres: {', '.join(GENRE_NAMES)}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0 (got {seconds})")
    if sr < 8000:
        raise ValueError(f"sr must be >= 8000 Hz (got {sr})")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    recipe = GENRES[genre]
    n_out = int(round(seconds * sr))

    bpm = _u(rng, recipe.bpm)
    beat = 60.0 / bpm
    lead_in = float(rng.uniform(0.0, 4 * beat))  # start somewhere inside the first bar
    n = int(round((seconds + lead_in + 0.5) * sr))
    n_beats = 4 * int(np.ceil((seconds + lead_in + 2.0) / beat / 4 / (1 - 2.5 * recipe.rubato)) + 1)
    scale_name, prog = recipe.harmony[int(rng.integers(len(recipe.harmony)))]
    chord_beats = int(rng.choice(recipe.chord_beats))
    prog_chords = [_parse_chord(s) for s in prog.split()]
    key = int(rng.integers(12))
    chords = []
    for k, b in enumerate(range(0, n_beats, chord_beats)):
        off, iv = prog_chords[k % len(prog_chords)]
        chords.append((float(b), float(min(chord_beats, n_beats - b)), (key + off) % 12, iv))
    ctx = _Ctx(sr=sr, rng=rng, beat_times=_tempo_map(rng, bpm, recipe.rubato, n_beats),
               swing=_u(rng, recipe.swing), swing_cell=recipe.swing_cell, key=key,
               scale=SCALES[scale_name], chords=chords)
    jitter = recipe.jitter_ms / 1000.0

    tracks: list[np.ndarray] = []
    if recipe.kit is not None and recipe.patterns:
        drums = _render_drums(ctx, recipe, n, jitter * 0.7)
        tracks.append(drums * (_u(rng, recipe.drum_gain) / max(float(np.sqrt(np.mean(drums ** 2))), 1e-9)))
    chosen = [p for p in recipe.parts if rng.random() < p.prob]
    if not chosen:
        chosen = [max(recipe.parts, key=lambda p: p.prob)]
    for part in chosen:
        v = part.voices[int(rng.integers(len(part.voices)))]
        y = _render_notes(ctx, v, STYLES[part.style](ctx, part, rng), n, jitter)
        drive = _u(rng, part.drive)
        if drive > 0:
            y = np.tanh(drive * y / max(float(np.abs(y).max()), 1e-9))
        if part.cutoff:
            y = _filt(y, "lowpass", part.cutoff, sr)
        rms = float(np.sqrt(np.mean(y ** 2)))
        if rms > 0:
            tracks.append(y * (_u(rng, part.gain) / rms))
    mix = np.sum(tracks, axis=0).astype(np.float32)

    mix = _reverb(mix, sr, _u(rng, recipe.reverb), rng)
    rms = float(np.sqrt(np.mean(mix ** 2))) or 1.0
    # hiss: 6 s of white noise tiled (cheap; inaudible as a loop at these levels)
    hiss = np.resize(rng.standard_normal(min(n, 1 << 17), dtype=np.float32), n)
    mix = mix + hiss * np.float32(rms * 10 ** (-_u(rng, recipe.snr_db) / 20))
    if rng.random() < recipe.crackle:
        pops = np.zeros(n, dtype=np.float32)
        idx = rng.integers(0, n, int(rng.uniform(3, 12) * n / sr))
        pops[idx] = rng.uniform(-1, 1, len(idx)) * rms * rng.uniform(1.5, 4.0)
        mix = mix + _filt(pops, "bandpass", (800.0, 6000.0), sr)
    mix = _filt(mix, "lowpass", _u(rng, recipe.tone_hz), sr)

    start = int(round(lead_in * sr))
    out = np.asarray(mix[start: start + n_out], dtype=np.float64)
    out -= out.mean()
    peak = float(np.abs(out).max())
    if peak <= 0 or not np.isfinite(peak):
        raise RuntimeError("synthesis produced silence or non-finite audio")  # pragma: no cover
    return (out * (rng.uniform(0.3, 0.9) / peak)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------

def clip_seed(seed: int, genre: str, index: int) -> int:
    """Stable 63-bit seed of clip ``index`` of ``genre`` in corpus ``seed`` (SHA-256 based, so it
    does not depend on Python's hash randomisation nor on which other clips are generated)."""
    digest = hashlib.sha256(f"genre-ray-synth:{int(seed)}:{genre}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


_SUBTYPE_PREFERENCE = ("PCM_16", "VORBIS", "MPEG_LAYER_III")


def _format_for(fmt: str) -> tuple[str, str | None]:
    name = fmt.lower().lstrip(".")
    major = {"aif": "AIFF", "aiff": "AIFF", "oga": "OGG"}.get(name, name.upper())
    if not name or major not in sf.available_formats():
        known = sorted(k.lower() for k in sf.available_formats())
        raise ValueError(f"unknown audio format {fmt!r}; soundfile can write: {', '.join(known)}")
    for sub in _SUBTYPE_PREFERENCE:
        if sf.check_format(major, sub):
            return major, sub
    return major, None


def write_corpus(
    out: str | Path,
    genres: int | Sequence[str] = 10,
    per_genre: int = 10,
    seconds: float = 30.0,
    seed: int = 0,
    sr: int = DEFAULT_SR,
    fmt: str = "wav",
    start_index: int = 0,
    workers: int = 1,
    channels: int = 1,
) -> list[Path]:
    """Write a synthetic corpus in the GTZAN layout ``out/<genre>/<genre>.<5-digit index>.<fmt>``.

    Args:
        out: root folder (created if needed).
        genres: the first N names of :data:`GENRE_NAMES` (1 ≤ N ≤ 10) or an explicit list of names.
        per_genre: clips per genre (≥ 1), indices ``start_index .. start_index + per_genre - 1``.
        seconds: clip length (> 0).
        seed: corpus seed; clip k of a genre depends only on (seed, genre, k) — see :func:`clip_seed`.
        sr: sample rate.
        fmt: file extension soundfile can write (wav/flac as PCM_16, ogg as Vorbis, mp3, ...).
        start_index: first clip index (e.g. 100 to write unseen clips of the same genres).
        workers: threads that synthesise and write clips in parallel (1: one after the other). Each clip depends
            only on its own seed, so the files are the same either way.
        channels: 1 (mono, like GTZAN) or 2 (stereo, like most music libraries: the right channel is the left
            mixed with an echo, :func:`stereo`; the downmix has the genre's spectra within ±1.2 dB).

    Returns:
        The written paths, sorted.  Same arguments → byte-identical WAV/FLAC files.
    """
    if isinstance(genres, (int, np.integer)) and not isinstance(genres, bool):
        if not 1 <= int(genres) <= len(GENRE_NAMES):
            raise ValueError(f"genres must be between 1 and {len(GENRE_NAMES)} (got {genres})")
        names = list(GENRE_NAMES[: int(genres)])
    elif isinstance(genres, str) or not isinstance(genres, Sequence):
        raise ValueError(f"genres must be an int or a sequence of genre names (got {genres!r})")
    else:
        names = list(genres)
        unknown = [g for g in names if g not in GENRES]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"genres must be distinct names from {', '.join(GENRE_NAMES)} (got {names})")
    if int(per_genre) != per_genre or per_genre < 1:
        raise ValueError(f"per_genre must be an integer >= 1 (got {per_genre})")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0 (got {seconds})")
    if int(start_index) != start_index or start_index < 0:
        raise ValueError(f"start_index must be an integer >= 0 (got {start_index})")
    if int(start_index) + int(per_genre) - 1 > 99_999:
        raise ValueError("clip indices must fit in 5 digits")
    if sr < 8000:
        raise ValueError(f"sr must be >= 8000 Hz (got {sr})")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2 (got {channels})")
    major, subtype = _format_for(fmt)
    ext = fmt.lower().lstrip(".")

    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1 (got {workers})")

    root = Path(out)
    jobs = []
    for g in names:
        (root / g).mkdir(parents=True, exist_ok=True)
        for idx in range(int(start_index), int(start_index) + int(per_genre)):
            jobs.append((root / g / f"{g}.{idx:05d}.{ext}", g, idx, seconds, seed, sr, major, subtype, channels))
    if int(workers) > 1 and len(jobs) > 1:
        # threads: NumPy and libsndfile release the GIL for the heavy parts; no child process re-imports the
        # caller's main module (a process pool's spawn does, and fails for a script read from stdin)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(int(workers), len(jobs))) as ex:
            list(ex.map(_write_clip, jobs))
    else:
        for job in jobs:
            _write_clip(job)
    return sorted(job[0] for job in jobs)


def _write_clip(job: tuple) -> None:
    path, genre, idx, seconds, seed, sr, major, subtype, channels = job
    y = synth_clip(genre, seconds, sr=sr, rng=np.random.default_rng(clip_seed(seed, genre, idx)))
    _write_audio(path, stereo(y, sr) if channels == 2 else y, sr, major, subtype)


def stereo(y: np.ndarray, sr: int, echo_s: float = 0.023) -> np.ndarray:
    """``(T,)`` mono → ``(T, 2)`` float32: the clip on the left; on the right the clip at 0.75 plus a 0.25 echo
    ``echo_s`` later (a reflection: the channels differ as a real mix's do, so the codecs code two channels'
    worth, not one and a copy — panned copies decoded ~10 % faster as mp3/ogg). The downmix is the clip at 0.875
    plus the echo at 0.125: within ±1.2 dB of the clip's spectrum, a ripple every 1 / ``echo_s`` Hz (43 Hz) that
    mel bands average out. Peaks stay within the clip's."""
    d = min(len(y), max(1, round(echo_s * sr)))
    echo = np.concatenate([np.zeros(d, y.dtype), y[:len(y) - d]])
    return np.stack([y, 0.75 * y + 0.25 * echo], axis=1).astype(np.float32)


def _write_audio(path: Path, y: np.ndarray, sr: int, major: str, subtype: str, block: int = 1 << 16) -> None:
    """``(T,)`` mono or ``(T, C)`` audio, written in blocks: libsndfile 1.2.2 segfaults on a single long Vorbis
    write (seen with 3-min stereo)."""
    with sf.SoundFile(path, "w", samplerate=sr, channels=1 if y.ndim == 1 else y.shape[1], format=major,
                      subtype=subtype) as f:
        for i in range(0, len(y), block):
            f.write(y[i:i + block])
