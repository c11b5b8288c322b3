"""Parity of `omnistream.inputs.Processor` with transformers' `Qwen3OmniMoeProcessor` (test-only reference).

What is compared, and how (spec §10):
- Text, audio and images go through the real `Qwen3OmniMoeProcessor` with the reference's own
  tokenizer (`Qwen2Tokenizer` on our test tokenizer.json), `WhisperFeatureExtractor` and the **PIL**
  backend of the image processor (`Qwen2VLImageProcessorPil`): input_ids, attention_mask, grids and
  masks must be identical; features and pixels within 1e-5 (measured: exactly equal).
- The reference video processor needs torchvision, which does not import beside torch 2.13 here. The
  reference processor is built without it; for video calls a stand-in video processor builds
  `pixel_values_videos` by running the reference *image* processor on every frame (video size bounds)
  and pairing frames in time — so our video pixels are checked against the reference's PIL resize and
  normalisation, and everything else (placeholder expansion including audio-in-video interleaving,
  `video_second_per_grid` from the fps passed) is the reference processor's own code.
- Position ids and rope deltas: the reference thinker's `get_rope_index`, called on the reference
  processor's output with a thinker config read from the same config.json.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from omnistream.inputs import Processor
from omnistream.inputs.media import load_audio
from omnistream.inputs.limits import InputLimits
from tests.inputs_fixtures import build_checkpoint, drawing, encode_video, espeak_wav, noise, tone, video_frames

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.parity

VIDEO_SIZE = {"shortest_edge": 128 * 32 * 32, "longest_edge": 768 * 32 * 32}


class FrameWiseVideoProcessor:
    """Stand-in for the torchvision-only video processor: reference image processor per frame, paired in time."""
    merge_size = 2
    temporal_patch_size = 2

    def __init__(self, image_processor) -> None:
        self.image_processor = image_processor

    def __call__(self, videos, **kwargs):
        rows, grids = [], []
        for video in videos:
            frames = [np.asarray(f) for f in video]
            frames += [frames[-1]] * (-len(frames) % 2)
            per_frame = [self.image_processor(images=[f], size=VIDEO_SIZE, return_tensors="pt") for f in frames]
            grid = per_frame[0]["image_grid_thw"][0]
            single = [p["pixel_values"].view(-1, 3, 2, 16, 16)[:, :, 0] for p in per_frame]   # [N, 3, 16, 16]
            for t in range(0, len(single), 2):
                rows.append(torch.stack([single[t], single[t + 1]], dim=2).reshape(-1, 3 * 2 * 16 * 16))
            grids.append([len(frames) // 2, int(grid[1]), int(grid[2])])
        return {"pixel_values_videos": torch.cat(rows), "video_grid_thw": torch.tensor(grids)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("processor_ckpt"))


@pytest.fixture(scope="module")
def ours(folder) -> Processor:
    return Processor.from_pretrained(folder)


@pytest.fixture(scope="module")
def reference(folder, ours):
    return make_reference(folder, ours)


def make_reference(folder: Path, ours: Processor):
    from transformers import AutoTokenizer, Qwen3OmniMoeProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import OmniModalProcessorMixin

    class ReferenceWithoutVideoProcessor(Qwen3OmniMoeProcessor):
        def __init__(self, image_processor=None, feature_extractor=None, tokenizer=None, chat_template=None):
            OmniModalProcessorMixin.__init__(self, image_processor, feature_extractor, tokenizer,
                                             chat_template=chat_template)
            for name in ("image_token", "audio_token", "video_token", "image_token_id", "audio_token_id",
                         "video_token_id", "vision_bos_token", "vision_eos_token", "audio_bos_token",
                         "audio_eos_token"):
                setattr(self, name, getattr(tokenizer, name))

        @property
        def model_input_names(self):
            return []

    image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
    processor = ReferenceWithoutVideoProcessor(image_processor, WhisperFeatureExtractor.from_pretrained(folder),
                                               AutoTokenizer.from_pretrained(folder), ours.chat_template)
    processor.video_processor = FrameWiseVideoProcessor(image_processor)
    return processor


@pytest.fixture(scope="module")
def rope_reference(folder):
    from transformers import Qwen3OmniMoeConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoePreTrainedModelForConditionalGeneration as Thinker,
    )

    config = Qwen3OmniMoeConfig.from_pretrained(folder).thinker_config
    fake = SimpleNamespace(config=config, spatial_merge_size=config.vision_config.spatial_merge_size)
    fake.get_llm_pos_ids_for_vision = lambda *args: Thinker.get_llm_pos_ids_for_vision(fake, *args)
    return lambda *args: Thinker.get_rope_index(fake, *args)


def media_of(conversations, kind):
    found = []
    for conversation in conversations:
        for message in conversation:
            if isinstance(message["content"], list):
                found += [part[kind] for part in message["content"] if part.get("type") == kind]
    return found


def as_audio(value):
    return value[0] if isinstance(value, tuple) else value


def run_both(ours, reference, rope_reference, conversations, use_audio_in_video=False, fps=None, video_audio=(),
             audio_sources=None):
    """Run both processors; assert every field equal (features/pixels within 1e-5); return the max differences."""
    mine = ours(conversations, use_audio_in_video=use_audio_in_video)
    texts = [reference.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    assert texts == list(mine.prompts)
    images = media_of(conversations, "image")
    videos = [np.stack(v) for v in media_of(conversations, "video")]
    audio = [as_audio(a) for a in media_of(conversations, "audio")]
    kwargs = {}
    if videos:
        kwargs["fps"] = fps
    if use_audio_in_video:
        # every audio in order of appearance; `audio_sources[i]` is the video it came from (None: standalone)
        audio = list(video_audio)
        sources = audio_sources if audio_sources is not None else list(range(len(videos)))
        kwargs.update(use_audio_in_video=True, audio_from_video_indices=sources)
    ref = reference(text=texts, images=images or None, videos=videos or None, audio=audio or None,
                    return_tensors="pt", padding=True, **kwargs)
    assert torch.equal(ref["input_ids"], mine.input_ids)
    assert torch.equal(ref["attention_mask"], mine.attention_mask)
    diffs = {}
    for name in ("image_grid_thw", "video_grid_thw", "feature_attention_mask"):
        assert (name in ref) == (getattr(mine, name) is not None), name
        if name in ref:
            assert torch.equal(ref[name], getattr(mine, name)), name
    for name in ("input_features", "pixel_values", "pixel_values_videos"):
        if name in ref:
            torch.testing.assert_close(getattr(mine, name), ref[name], rtol=0, atol=1e-5)
            diffs[name] = float((getattr(mine, name) - ref[name]).abs().max())
    if videos:
        torch.testing.assert_close(mine.video_second_per_grid, torch.as_tensor(ref["video_second_per_grid"]),
                                   rtol=0, atol=0)
    lengths = ref["feature_attention_mask"].sum(-1) if "feature_attention_mask" in ref else None
    seconds = torch.as_tensor(ref["video_second_per_grid"]) if videos else None
    positions, deltas = rope_reference(ref["input_ids"], ref.get("image_grid_thw"), ref.get("video_grid_thw"),
                                       ref["attention_mask"], use_audio_in_video, lengths, seconds)
    assert torch.equal(positions, mine.position_ids)
    assert torch.equal(deltas.reshape(-1).float(), mine.rope_deltas)
    return mine, diffs


def user(*parts):
    return {"role": "user", "content": list(parts)}


def text(value):
    return {"type": "text", "text": value}


def test_text_multi_turn_with_system(ours, reference, rope_reference):
    conversation = [
        {"role": "system", "content": "You are a helpful assistant."},
        user(text("Hello world!")),
        {"role": "assistant", "content": "<think>\nsay hi\n</think>\n\nHi there."},
        {"role": "user", "content": "What numbers come after 0123?"},
    ]
    mine, _ = run_both(ours, reference, rope_reference, [conversation])
    assert mine.input_ids[0, :3].tolist() == [151644, 8948, 198]


@pytest.mark.parametrize("seconds", [0.3, 1.37, 45.0])
def test_audio_lengths(ours, reference, rope_reference, seconds):
    conversation = [user({"type": "audio", "audio": (tone(seconds, 330.0) + noise(seconds, seed=1), 16000)},
                         text("Describe the audio."))]
    mine, diffs = run_both(ours, reference, rope_reference, [conversation])
    assert mine.input_ids[0, :5].tolist() == [151644, 872, 198, 151669, 151675]
    assert diffs["input_features"] == 0.0


def test_speech_from_espeak_file(ours, reference, rope_reference):
    wav = espeak_wav("The red circle moves to the left.")
    conversation = [user({"type": "audio", "audio": wav}, text("Transcribe."))]
    mine = ours([conversation])
    decoded = load_audio(wav, "speech", InputLimits())
    conversation_array = [user({"type": "audio", "audio": (decoded, 16000)}, text("Transcribe."))]
    run_both(ours, reference, rope_reference, [conversation_array])
    assert torch.equal(mine.input_features, ours([conversation_array]).input_features)


def test_images_odd_sizes_and_modes(ours, reference, rope_reference):
    conversation = [user({"type": "image", "image": drawing(100, 70)}, text("and"),
                         {"type": "image", "image": drawing(37, 300, seed=2)},
                         {"type": "image", "image": drawing(1, 1, seed=3)},
                         {"type": "image", "image": drawing(203, 97, seed=4, mode="RGBA")},
                         {"type": "image", "image": drawing(64, 48, seed=5, mode="L")},
                         text("What differs?"))]
    _, diffs = run_both(ours, reference, rope_reference, [conversation])
    assert diffs["pixel_values"] == 0.0


def test_large_image_downscaled_with_checkpoint_pixel_bounds(tmp_path, rope_reference):
    """max_pixels read from preprocessor_config.json (small here, so the downscale path stays cheap)."""
    folder = build_checkpoint(tmp_path / "small_pixels", preprocessor={"min_pixels": 4096, "max_pixels": 200_000})
    mine_processor = Processor.from_pretrained(folder)
    conversation = [user({"type": "image", "image": drawing(900, 700, seed=6)}, text("Big."))]
    mine, _ = run_both(mine_processor, make_reference(folder, mine_processor), rope_reference, [conversation])
    assert int(mine.image_grid_thw.prod()) * 16 * 16 <= 200_000
    assert mine.image_grid_thw.tolist() == [[1, 24, 30]]   # β = √(630000/200000): 700/β → 384, 900/β → 480


@pytest.mark.parametrize("fps,count", [(2.0, 6), (4.0, 5)])
def test_video_without_audio(ours, reference, rope_reference, fps, count):
    frames = video_frames(count, 96, 64)
    conversation = [user({"type": "video", "video": frames, "fps": fps}, text("What moves?"))]
    mine, diffs = run_both(ours, reference, rope_reference, [conversation], fps=fps)
    assert diffs["pixel_values_videos"] == 0.0
    assert mine.video_grid_thw.tolist() == [[-(-count // 2), 20, 28]]  # 64x96 → 320x448 by the 131072 minimum


# (2 frames, 0.3 s): the audio tail comes last and its max is below the video's H/W ids, so the end markers
# follow the tail, not the block max (reference behaviour kept in positions.py).
@pytest.mark.parametrize("fps,seconds,count", [(2.0, 2.5, 6), (4.0, 1.7, 6), (1.3, 3.0, 6), (2.0, 0.3, 2)])
def test_video_with_audio_in_video(ours, reference, rope_reference, fps, seconds, count):
    frames = video_frames(count, 64, 64, seed=1)
    track = tone(seconds, 220.0) + noise(seconds, seed=2)
    conversation = [user({"type": "video", "video": frames, "fps": fps, "audio": (track, 16000)},
                         text("What do you hear and see?"))]
    mine, _ = run_both(ours, reference, rope_reference, [conversation], use_audio_in_video=True, fps=fps,
                       video_audio=[track])
    ids = mine.input_ids[0].tolist()
    start = ids.index(151652)
    assert ids[start + 1] == 151669 and ids[start + 2] == 151656  # <vs><as> then the first video grid


def test_standalone_audio_before_audio_in_video(ours, reference, rope_reference):
    question, track = noise(0.8, seed=5), tone(2.0, 250.0)
    conversation = [user({"type": "audio", "audio": (question, 16000)},
                         {"type": "video", "video": video_frames(4, 64, 64, seed=2), "fps": 2.0,
                          "audio": (track, 16000)},
                         text("Answer the spoken question about the clip."))]
    mine, _ = run_both(ours, reference, rope_reference, [conversation], use_audio_in_video=True, fps=2.0,
                       video_audio=[question, track], audio_sources=[None, 0])
    assert mine.audios_per_row == (2,)


def test_encoded_video_file_with_audio_track(ours, reference, rope_reference):
    frames = video_frames(30, 80, 48, seed=3)
    track = tone(3.0, 440.0)
    data = encode_video(frames, fps=10, fmt="mp4", audio=track)
    mine = ours([[user({"type": "video", "video": data}, text("Describe."))]], use_audio_in_video=True)
    # 3 s at 10 fps sampled at 2 fps → 6 frames → 3 temporal grids; real sampling rate 6/30·10 = 2 fps
    assert mine.video_grid_thw[0, 0].item() == 3
    assert mine.video_second_per_grid.tolist() == [1.0]
    assert mine.input_features is not None and mine.audios_per_row == (1,)
    plain = ours([[user({"type": "video", "video": data}, text("Describe."))]])
    assert plain.input_features is None


def test_batch_of_mixed_conversations(ours, reference, rope_reference):
    conversations = [
        [{"role": "system", "content": "Be brief."},
         user({"type": "audio", "audio": (tone(1.37), 16000)}, {"type": "image", "image": drawing(50, 90)},
              text("What is this?"))],
        [user(text("Just text, a little longer than the others to change the padding."))],
        [user({"type": "image", "image": drawing(300, 120, seed=9)}, {"type": "audio", "audio": (noise(0.3), 16000)},
              {"type": "video", "video": video_frames(4, 64, 96, seed=4), "fps": 2.0}),
         {"role": "assistant", "content": "A picture, a noise and a clip."},
         user(text("Which came first?"))],
    ]
    mine, diffs = run_both(ours, reference, rope_reference, conversations, fps=2.0)
    assert mine.attention_mask[:, -1].tolist() == [1, 1, 1]          # left padding
    assert mine.images_per_row == (1, 0, 1) and mine.audios_per_row == (1, 0, 1)
    assert max(diffs.values()) == 0.0


@pytest.mark.parametrize("image_after", [False, True])
def test_positions_of_interleaved_prompt_without_the_flag(ours, rope_reference, image_after):
    """The talker computes positions with use_audio_in_video=False on interleaved ids (spec §7.2-2)."""
    from omnistream.inputs import rope_index

    parts = [{"type": "video", "video": video_frames(4, 64, 64, seed=7), "fps": 2.0,
              "audio": (tone(1.6, 300.0), 16000)}, text("Describe.")]
    if image_after:
        parts.append({"type": "image", "image": drawing(64, 96, seed=8)})
    inputs = ours([[user(*parts)]], use_audio_in_video=True)
    lengths = inputs.feature_attention_mask.sum(-1)
    expected, expected_deltas = rope_reference(inputs.input_ids, inputs.image_grid_thw, inputs.video_grid_thw,
                                               inputs.attention_mask, False, lengths, inputs.video_second_per_grid)
    positions, deltas = rope_index(inputs.input_ids, inputs.attention_mask, ours.token_ids,
                                   image_grid_thw=inputs.image_grid_thw, video_grid_thw=inputs.video_grid_thw,
                                   video_second_per_grid=inputs.video_second_per_grid, audio_lengths=lengths,
                                   use_audio_in_video=False)
    assert torch.equal(positions, expected) and torch.equal(deltas, expected_deltas.reshape(-1).float())
    assert torch.equal(positions, inputs.position_ids) == image_after   # without an image after, ids differ
