"""Timeline: sample-accurate placement, masks and counts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mgsim.errors import ConfigError
from mgsim.gateway.timeline import Placement, Timeline


def frames(n_frames: int, size: int = 160) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(n_frames)
    audio = rng.integers(-20000, 20000, n_frames * size).astype(np.int16)
    return [(i * size, audio[i * size : (i + 1) * size]) for i in range(n_frames)]


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled"])
def test_arrival_order_does_not_change_the_result(order: str) -> None:
    chunks = frames(50)
    expected = np.concatenate([pcm for _, pcm in chunks])
    if order == "reversed":
        chunks = chunks[::-1]
    elif order == "shuffled":
        chunks = [chunks[i] for i in np.random.default_rng(1).permutation(len(chunks))]
    tl = Timeline()
    for start, pcm in chunks:
        assert tl.place(start, pcm, streamed=False) == Placement(160, 0, 0)
    np.testing.assert_array_equal(tl.audio(), expected)
    assert tl.received_mask().all() and tl.received_samples == len(expected) == len(tl)


def test_a_gap_stays_zero_and_unreceived() -> None:
    tl = Timeline()
    tl.place(0, np.ones(100, np.int16), streamed=True)
    tl.place(300, np.ones(100, np.int16), streamed=False)
    assert len(tl) == 400
    assert tl.audio()[100:300].tolist() == [0] * 200
    mask = tl.received_mask()
    assert mask[:100].all() and not mask[100:300].any() and mask[300:].all()
    streamed = tl.streamed_mask()
    assert streamed[:100].all() and not streamed[100:].any()
    assert (tl.received_ms(), tl.streamed_ms()) == (25.0, 12.5)


@pytest.mark.parametrize(
    ("first", "second", "placement"),
    [
        ((False, 0), (False, 0), Placement(0, 0, 160)),  # exact repeat
        ((False, 0), (True, 80), Placement(80, 160, 80)),  # overlap, now streaming
        ((True, 0), (True, 80), Placement(80, 80, 80)),  # streamed once, never twice
        ((True, 0), (False, 80), Placement(80, 0, 80)),
    ],
)
def test_repeats_are_not_double_counted(
    first: tuple[bool, int], second: tuple[bool, int], placement: Placement
) -> None:
    tl = Timeline()
    tl.place(first[1], np.full(160, 1, np.int16), streamed=first[0])
    assert tl.place(second[1], np.full(160, 2, np.int16), streamed=second[0]) == placement
    assert tl.received_samples == 160 + placement.new
    assert tl.overlap_samples == placement.overlap
    assert tl.streamed_samples == int(tl.streamed_mask().sum())
    # The first copy of a sample wins.
    assert tl.audio()[:160].tolist() == [1] * 160


def test_copies_do_not_alias_the_buffer() -> None:
    tl = Timeline()
    tl.place(0, np.ones(10, np.int16), streamed=True)
    tl.audio()[:] = 7
    tl.received_mask()[:] = False
    tl.streamed_mask()[:] = False
    assert tl.audio().tolist() == [1] * 10 and tl.received_mask().all() and tl.streamed_mask().all()


@pytest.mark.parametrize("start", [-1, 1000])
def test_out_of_range_is_refused_without_change(start: int) -> None:
    tl = Timeline(max_samples=1100)
    with pytest.raises(ConfigError):
        tl.place(start, np.ones(160, np.int16), streamed=False)
    assert len(tl) == 0 and tl.received_samples == 0


def test_empty_placement_changes_nothing() -> None:
    tl = Timeline()
    assert tl.place(500, np.zeros(0, np.int16), streamed=True) == Placement(0, 0, 0)
    assert len(tl) == 0


def test_ten_minutes_of_frames_place_in_linear_time() -> None:
    # 2 x 30,000 frames of 20 ms: a quadratic buffer would copy ~10^10 samples here.
    pcm = np.ones(160, np.int16)
    tl = Timeline()
    began = time.perf_counter()
    for i in range(30_000):
        tl.place(i * 160, pcm, streamed=i % 2 == 0)
    elapsed = time.perf_counter() - began
    assert len(tl) == 4_800_000 and tl.streamed_samples == 2_400_000
    assert elapsed < 5.0
