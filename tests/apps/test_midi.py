"""A piano roll written as MIDI reads back as the same notes at the same steps; the piano-roll figure is drawn."""

from __future__ import annotations

import numpy as np
import pytest


def test_a_piano_roll_round_trips_through_midi(tmp_path):
    mido = pytest.importorskip("mido")
    from vaekit.apps.midi import write_midi

    roll = np.zeros((6, 88), np.float32)
    roll[0:3, 60 - 21] = 1  # C4 held for 3 steps
    roll[2, 64 - 21] = 1  # E4 for one step
    roll[4:6, 67 - 21] = 1  # G4 for the last two
    path = write_midi(roll, tmp_path / "c.mid", step_ticks=240)
    back, now, held = np.zeros_like(roll), 0, {}
    for msg in mido.MidiFile(path).tracks[0]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            held[msg.note] = now
        elif msg.type in ("note_on", "note_off"):
            back[held.pop(msg.note) // 240 : now // 240, msg.note - 21] = 1
    assert not held and np.array_equal(back, roll)


def test_the_piano_roll_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from vaekit.plots.sequences import plot_piano_rolls

    rolls = [np.eye(8, 88, 40), np.eye(5, 88, 50)]
    p = plot_piano_rolls(rolls, tmp_path / "rolls.png", titles=["a", "b"])
    assert p.stat().st_size > 1000
    with pytest.raises(ValueError, match="piano rolls must be"):
        plot_piano_rolls([np.zeros(4)], tmp_path / "x.png")
