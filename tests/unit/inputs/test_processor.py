"""Processor behaviour without the reference: checkpoint-driven ids, limits, batching and ModelInputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omnistream.errors import ConfigError, LimitExceeded
from omnistream.inputs import InputLimits, ModelInputs, Processor
from omnistream.inputs.tokenizer import write_tokenizer
from tests.inputs_fixtures import CORPUS, PREPROCESSOR_CONFIG, drawing, encode_video, noise, tone, video_frames
from tests.reference import tiny_config

SMALL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>",
                  "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>"]


def conversation(*parts):
    return [{"role": "user", "content": list(parts)}]


@pytest.fixture(scope="module")
def small_vocab(tmp_path_factory):
    """A checkpoint whose special ids follow a 500-token vocabulary; config.json says so, nothing else."""
    folder = tmp_path_factory.mktemp("small_vocab")
    write_tokenizer(folder, CORPUS, SMALL_SPECIALS, vocab_size=500)
    ids = {t: i for t, i in json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"].items()
           if t in SMALL_SPECIALS}
    config = tiny_config()
    thinker = config["thinker_config"]
    thinker.update(audio_token_id=ids["<|audio_pad|>"], image_token_id=ids["<|image_pad|>"],
                   video_token_id=ids["<|video_pad|>"], audio_start_token_id=ids["<|audio_start|>"],
                   audio_end_token_id=ids["<|audio_end|>"], vision_start_token_id=ids["<|vision_start|>"])
    del thinker["vision_end_token_id"]                       # looked up in the tokenizer instead
    config.update(im_start_token_id=ids["<|im_start|>"], im_end_token_id=ids["<|im_end|>"])
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG))
    return folder, ids


def test_small_vocabulary_ids_come_from_the_checkpoint(small_vocab):
    folder, ids = small_vocab
    processor = Processor.from_pretrained(folder)            # no chat_template.json: built-in template
    assert processor.token_ids.vision_end == ids["<|vision_end|>"]
    inputs = processor(conversation({"type": "image", "image": drawing(64, 64)},
                                    {"type": "audio", "audio": (tone(1.0), 16000)}))
    row = inputs.input_ids[0].tolist()
    assert max(row) < 600 and row[0] == ids["<|im_start|>"]
    assert row.count(ids["<|image_pad|>"]) == 4 and row.count(ids["<|audio_pad|>"]) == 13
    vs = row.index(ids["<|vision_start|>"])
    assert inputs.position_ids[:, 0, vs + 1].tolist() == [vs + 1] * 3          # image block starts after <vs>


def test_token_budget_is_checked_before_pixels(processor):
    limits = InputLimits(max_total_tokens=50)
    small = Processor(processor.tokenizer, processor.token_ids, processor.settings, processor.chat_template, limits)
    with pytest.raises(LimitExceeded, match="max_total_tokens"):
        small(conversation({"type": "image", "image": drawing(640, 640)}))
    with pytest.raises(LimitExceeded, match="max_total_tokens"):
        small(conversation({"type": "audio", "audio": (tone(5.0), 16000)}))


def test_media_item_and_frame_limits(processor):
    limits = InputLimits(max_media_items=1, max_video_frames=3)
    small = Processor(processor.tokenizer, processor.token_ids, processor.settings, processor.chat_template, limits)
    image = {"type": "image", "image": drawing(32, 32)}
    with pytest.raises(LimitExceeded, match="max_media_items"):
        small(conversation(image, image))
    with pytest.raises(LimitExceeded, match="max_video_frames"):
        small(conversation({"type": "video", "video": video_frames(4, 32, 32)}))


def test_silent_video_with_audio_in_video_is_a_plain_video(processor):
    data = encode_video(video_frames(8, 64, 64), fps=4)
    plain = processor(conversation({"type": "video", "video": data}), use_audio_in_video=False)
    mixed = processor(conversation({"type": "video", "video": data}), use_audio_in_video=True)
    assert torch.equal(plain.input_ids, mixed.input_ids) and mixed.input_features is None
    assert plain.video_grid_thw.tolist() == [[2, 24, 24]]      # 8 frames at 4 fps → 2 s → 4 frames sampled
    assert plain.video_second_per_grid.tolist() == [1.0]


def test_rows_split_equals_single_requests(processor):
    conversations = [
        conversation({"type": "image", "image": drawing(90, 60)}, {"type": "audio", "audio": (tone(2.0), 16000)}),
        conversation({"type": "text", "text": "only text here"}),
        conversation({"type": "video", "video": video_frames(4, 64, 64), "fps": 2.0},
                     {"type": "image", "image": drawing(40, 70, seed=1)},
                     {"type": "audio", "audio": (noise(0.7), 16000)}),
    ]
    batch = processor(conversations)
    for index, (row, single_conversation) in enumerate(zip(batch.rows(), conversations)):
        single = processor(single_conversation)
        assert torch.equal(row.input_ids, single.input_ids) and torch.equal(row.attention_mask, single.attention_mask)
        assert torch.equal(row.position_ids, single.position_ids) and torch.equal(row.rope_deltas, single.rope_deltas)
        for name in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw",
                     "video_second_per_grid", "feature_attention_mask"):
            mine, theirs = getattr(row, name), getattr(single, name)
            assert (mine is None and theirs is None) or torch.equal(mine, theirs), (index, name)
    # the longest audio is unaffected by batch padding; the shorter one differs only near its end (spec §4.1)
    assert torch.equal(batch.rows()[0].input_features, processor(conversations[0]).input_features)


def test_to_casts_media_only():
    processor_inputs = ModelInputs(
        input_ids=torch.zeros(1, 3, dtype=torch.int64), attention_mask=torch.ones(1, 3, dtype=torch.int64),
        position_ids=torch.zeros(3, 1, 3), rope_deltas=torch.zeros(1), input_features=torch.zeros(1, 128, 10),
        feature_attention_mask=torch.ones(1, 10, dtype=torch.int32), pixel_values=torch.zeros(4, 1536),
        image_grid_thw=torch.tensor([[1, 2, 2]]))
    half = processor_inputs.to("cpu", torch.bfloat16)
    assert half.input_features.dtype == torch.bfloat16 and half.pixel_values.dtype == torch.bfloat16
    assert half.position_ids.dtype == torch.float32 and half.input_ids.dtype == torch.int64
    assert set(half.as_dict()) == {"input_ids", "attention_mask", "input_features", "feature_attention_mask",
                                   "pixel_values", "image_grid_thw"}
    assert half.audio_feature_lengths.tolist() == [10]


def test_long_audio_is_not_capped_at_30_seconds(processor):
    inputs = processor(conversation({"type": "audio", "audio": (np.zeros(16000 * 45, np.float32) + 0.01, 16000)}))
    assert inputs.input_features.shape[-1] == 4500
    assert inputs.input_ids[0].tolist().count(151675) == 45 * 13


def test_a_part_sets_its_own_pixel_budget(processor):
    video = video_frames(4, 64, 64)
    default = processor(conversation({"type": "video", "video": video}))
    small = processor(conversation({"type": "video", "video": video, "min_pixels": 1024, "max_pixels": 64 * 64}))
    assert default.video_grid_thw.tolist() == [[2, 24, 24]]        # upscaled to the video minimum (spec §4.3)
    assert small.video_grid_thw.tolist() == [[2, 4, 4]]
    assert small.input_ids.shape[1] == default.input_ids.shape[1] - 2 * (24 * 24 - 4 * 4) // 4
    image = drawing(640, 640)
    assert processor(conversation({"type": "image", "image": image})).image_grid_thw.tolist() == [[1, 40, 40]]
    budget = processor(conversation({"type": "image", "image": image, "max_pixels": 320 * 320}))
    assert budget.image_grid_thw.tolist() == [[1, 20, 20]]


@pytest.mark.parametrize("options, param", [
    ({"max_pixels": 0}, "max_pixels"), ({"max_pixels": True}, "max_pixels"), ({"min_pixels": "many"}, "min_pixels"),
    ({"min_pixels": 5000, "max_pixels": 4096}, "min_pixels"), ({"max_pixels": 500}, "max_pixels"),
    ({"max_pixels": 10 ** 9}, "max_pixels"), ({"min_pixels": 10 ** 9}, "min_pixels"),
])
def test_a_bad_pixel_budget_is_a_typed_error_naming_it(processor, options, param):
    from omnistream.errors import OmniInputError

    for part in ({"type": "image", "image": drawing(64, 64)}, {"type": "video", "video": video_frames(4, 32, 32)}):
        with pytest.raises(OmniInputError, match=param) as caught:
            processor(conversation({**part, **options}))
        assert caught.value.param == param


def test_low_detail_caps_an_image_at_512_by_512(processor):
    image = drawing(1024, 1024)
    grids = {detail: processor(conversation({"type": "image", "image": image, "detail": detail})).image_grid_thw
             for detail in ("auto", "high", "low")}
    assert grids["auto"].tolist() == grids["high"].tolist() == [[1, 64, 64]]
    assert grids["low"].tolist() == [[1, 32, 32]]
    from omnistream.errors import OmniInputError

    with pytest.raises(OmniInputError, match="detail") as caught:
        processor(conversation({"type": "image", "image": image, "detail": "medium"}))
    assert caught.value.param == "detail"


def test_a_checkpoint_can_name_its_own_video_frame_bounds(checkpoint, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps(
        config | {"video_min_pixels": 3136, "video_max_pixels": 224 * 224}))
    video = video_frames(8, 224, 224)
    own = Processor.from_pretrained(folder)(conversation({"type": "video", "video": video}))
    assert own.video_grid_thw.tolist() == [[4, 14, 14]]             # kept at 224 px: 196 tokens, not 576
    assert Processor.from_pretrained(checkpoint)(conversation({"type": "video", "video": video})
                                                 ).video_grid_thw.tolist() == [[4, 24, 24]]
    (folder / "preprocessor_config.json").write_text(json.dumps(
        config | {"video_min_pixels": 99_999, "video_max_pixels": 224 * 224}))
    with pytest.raises(ConfigError, match="video_min_pixels"):
        Processor.from_pretrained(folder)
