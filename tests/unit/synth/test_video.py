"""Videos: 8 frames at 2 fps, exactly one shape moving in the stated direction, nothing overlapping."""
from __future__ import annotations

import io

import av
import numpy as np

from omnistream.synth.shapes import COLOR_RGB, IMAGE_SIZE, boxes_apart
from omnistream.synth.video import DIRECTIONS, FPS, NUM_FRAMES, encode_mp4, render_video, sample_video_scene

_AXIS_SIGN = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}  # (axis: 0=x 1=y, sign)


def _centroid(frame: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    ys, xs = np.nonzero((frame == np.array(rgb, np.uint8)).all(-1))
    return np.array([xs.mean(), ys.mean()])


def test_same_seed_same_video_bytes():
    a = render_video(sample_video_scene(np.random.default_rng(5)))
    b = render_video(sample_video_scene(np.random.default_rng(5)))
    assert a.shape == (NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()


def test_motion_is_seen_in_the_pixels():
    """The moving shape's colour centroid travels along the stated direction; the still one stays put."""
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        scene = sample_video_scene(rng)
        frames = render_video(scene)
        seen.add(scene.direction)
        moving = scene.moving
        still = [s for i, s in enumerate(scene.shapes) if i != scene.moving_index]
        if still and still[0].color == moving.color:
            continue  # one colour for both: centroids mix; direction checked on other clips
        path = np.array([_centroid(f, COLOR_RGB[moving.color]) for f in frames])  # [T, 2] (x, y)
        axis, sign = _AXIS_SIGN[scene.direction]
        steps = np.diff(path, axis=0)
        assert np.all(np.sign(steps[:, axis]) == sign), scene
        assert np.allclose(np.abs(steps[:, axis]), scene.step, atol=1.0)
        assert np.allclose(steps[:, 1 - axis], 0.0, atol=0.5)
        if still:
            centres = np.array([_centroid(f, COLOR_RGB[still[0].color]) for f in frames])
            assert np.allclose(centres, centres[0])
    assert seen == set(DIRECTIONS)


def test_moving_shape_stays_inside_and_clear():
    rng = np.random.default_rng(2)
    for _ in range(200):
        scene = sample_video_scene(rng)
        assert len(scene.shapes) in (1, 2) and scene.fps == FPS
        for t in range(scene.num_frames):
            for s in scene.shapes_at(t):
                x0, y0, x1, y1 = s.bbox()
                assert 0 <= x0 and x1 <= IMAGE_SIZE and 0 <= y0 and y1 <= IMAGE_SIZE
        if len(scene.shapes) == 2:
            still = scene.shapes[1 - scene.moving_index]
            assert boxes_apart(scene.swept_bbox(), still.bbox())
            assert (still.kind, still.color) != (scene.moving.kind, scene.moving.color)


def test_mp4_round_trip():
    frames = render_video(sample_video_scene(np.random.default_rng(3)))
    data = encode_mp4(frames, fps=FPS)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == FPS
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == NUM_FRAMES
    assert decoded[0].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    # lossy, but close: plain colours survive compression
    assert np.abs(decoded[-1].astype(int) - frames[-1].astype(int)).mean() < 6.0
