import numpy as np
import pytest

from stream.buffers import EventBuffer, SampleRingBuffer


def test_ring_buffer_keeps_the_latest_samples_in_order_across_wraps():
    rng = np.random.default_rng(1)
    buffer = SampleRingBuffer(capacity=1000, n_channels=3)
    written_t, written_x = [], []
    t = 0
    for _ in range(200):
        n = int(rng.integers(1, 120))
        times = np.arange(t, t + n, dtype=float)
        data = rng.standard_normal((n, 3)).astype(np.float32)
        buffer.append(times, data)
        written_t.append(times)
        written_x.append(data)
        t += n
        all_t, all_x = np.concatenate(written_t), np.concatenate(written_x)
        got_t, got_x = buffer.between(-np.inf, np.inf)
        np.testing.assert_array_equal(got_t, all_t[-1000:])
        np.testing.assert_array_equal(got_x, all_x[-1000:])
    assert buffer.count == 1000 and buffer.total == t
    got_t, _ = buffer.between(t - 10.5, t - 5)
    np.testing.assert_array_equal(got_t, np.arange(t - 10, t - 4, dtype=float))
    assert buffer.latest_time == t - 1 and buffer.earliest_time == t - 1000


def test_ring_buffer_chunk_larger_than_capacity_and_bad_shapes():
    buffer = SampleRingBuffer(capacity=10, n_channels=2)
    buffer.append(np.arange(25.0), np.ones((25, 2), np.float32))
    np.testing.assert_array_equal(buffer.between(-1, 100)[0], np.arange(15.0, 25.0))
    with pytest.raises(ValueError, match=r"expected data of shape \(3, 2\)"):
        buffer.append(np.arange(3.0), np.ones((3, 4)))
    buffer.clear()
    assert buffer.latest_time is None and buffer.count == 0


def test_event_buffer_is_bounded_and_ordered():
    events = EventBuffer(capacity=3)
    for time, label in [(1.0, "W"), (2.0, "N1"), (3.0, "N2"), (4.0, "N3")]:
        events.append(time, label)
    assert len(events) == 3
    assert events.latest_before(3.5) == (3.0, "N2")
    assert events.latest_before(1.5) is None  # the first event was dropped
    assert [e[1] for e in events.between(2.0, 4.0)] == ["N2", "N3"]
