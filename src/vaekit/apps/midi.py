"""Piano rolls as MIDI files (the optional ``midi`` extra: ``pip install vaekit[midi]``, which brings mido)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

__all__ = ["write_midi"]


def write_midi(roll: np.ndarray, path: str | Path, lowest_note: int = 21, step_ticks: int = 240,
               velocity: int = 80, tempo_bpm: float = 100.0) -> Path:
    """Write a (T, K) 0/1 piano roll (column k = MIDI note lowest_note + k) as a one-track MIDI file: a note is
    held while consecutive steps keep it on; each step lasts ``step_ticks`` ticks at 480 per beat (240: an
    eighth note). Written to a temporary file, then renamed."""
    try:
        import mido
    except ImportError:
        raise ImportError("writing MIDI needs mido: pip install 'vaekit[midi]'") from None
    from vaekit.utils import atomic_write_bytes

    r = np.asarray(roll) > 0.5
    if r.ndim != 2:
        raise ValueError(f"a piano roll must be (T, keys), got shape {r.shape}")
    padded = np.concatenate([np.zeros((1, r.shape[1]), bool), r, np.zeros((1, r.shape[1]), bool)])
    events = []  # (tick, 0 off / 1 on, note)
    for t in range(1, len(padded)):
        for k in np.nonzero(padded[t] != padded[t - 1])[0]:
            events.append(((t - 1) * step_ticks, int(padded[t, k]), lowest_note + int(k)))
    events.sort()
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0)])
    now = 0
    for tick, on, note in events:
        track.append(mido.Message("note_on" if on else "note_off", note=note, velocity=velocity if on else 0,
                                  time=tick - now))
        now = tick
    f = mido.MidiFile(ticks_per_beat=480, tracks=[track])
    buf = io.BytesIO()
    f.save(file=buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
