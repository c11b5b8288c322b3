"""Thinker parity: omnistream loads a transformers-written random checkpoint and matches its logits in fp32.

Text-only prompts over several tiny configs (layers, heads, kv heads, experts, top-k, head_dim / mrope
sections), the captured hidden layer the talker consumes, and — once the encoders exist — a prompt mixing
text, image, audio and video with the reference's own position ids.
"""
from __future__ import annotations

import pytest
import torch

from omnistream.models.omni import OmniModel
from tests.reference import IDS, build_reference_checkpoint, tiny_config

pytestmark = pytest.mark.parity

CONFIGS = {
    "base": dict(thinker_layers=2, heads=4, kv_heads=2, experts=4, top_k=2),
    "deep_gqa4": dict(thinker_layers=3, heads=4, kv_heads=1, experts=8, top_k=2),
    "mha_top3": dict(thinker_layers=2, heads=2, kv_heads=2, head_dim=16, mrope_section=(4, 2, 2), experts=8,
                     top_k=3),
    "top1": dict(thinker_layers=2, heads=4, kv_heads=2, experts=6, top_k=1),
}


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    cfg = tiny_config(enable_audio_output=False, **CONFIGS[request.param])
    folder = tmp_path_factory.mktemp(f"thinker_{request.param}")
    ref = build_reference_checkpoint(folder, cfg, seed=1).thinker.eval()
    ours = OmniModel.from_pretrained(folder, dtype=torch.float32).thinker
    return request.param, ref, ours


def _text_prompt(batch: int, length: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    body = torch.randint(0, 151_000, (batch, length - 3), generator=gen)
    head = torch.tensor([IDS["im_start"], IDS["user"], IDS["newline"]]).expand(batch, 3)
    return torch.cat([head, body], dim=1)


@torch.no_grad()
def test_text_logits_match_reference(pair):
    name, ref, ours = pair
    ids = _text_prompt(2, 13, seed=3)
    expected = ref(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    embeds, _, _ = ours.embed(ids)
    hidden, _ = ours(embeds, torch.arange(ids.shape[1]).expand(3, *ids.shape))
    logits = ours.compute_logits(hidden)
    err = relative_error(logits, expected)
    print(f"\n[thinker text {name}] max|Δ logits| / max|logits| = {err:.2e} (scale {expected.abs().max():.2f})")
    assert err < 1e-5
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


@torch.no_grad()
def test_captured_hidden_layers_match_reference(pair):
    name, ref, ours = pair
    ids = _text_prompt(1, 9, seed=4)
    out = ref(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    embeds, _, _ = ours.embed(ids)
    positions = torch.arange(9).expand(3, 1, 9)
    for layer in range(len(ours.model.layers)):  # hidden_states[-1] is the normed output, checked above
        _, captured = ours(embeds, positions, capture_hidden_layer=layer)
        err = relative_error(captured, out.hidden_states[layer])
        assert err < 1e-5, (layer, err)


@torch.no_grad()
def test_tm_rope_positions_match_reference(pair):
    """Distinct, fractional T/H/W positions exercise the interleaved frequency split (spec §3.1, §3.4)."""
    name, ref, ours = pair
    ids = _text_prompt(2, 11, seed=5)
    gen = torch.Generator().manual_seed(6)
    positions = torch.cumsum(torch.rand(3, 2, 11, generator=gen) * 3, dim=-1)  # increasing, fractional
    expected = ref(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions).logits
    embeds, _, _ = ours.embed(ids)
    hidden, _ = ours(embeds, positions)
    err = relative_error(ours.compute_logits(hidden), expected)
    print(f"\n[thinker tm-rope {name}] max|Δ logits| / max|logits| = {err:.2e}")
    assert err < 1e-5


# ---------------------------------------------------------------------------------------- mixed media
MIXED_CONFIGS = {
    "deepstack1": dict(thinker_layers=2, experts=4, top_k=2, deepstack=(0,)),
    "deepstack2": dict(thinker_layers=3, kv_heads=1, experts=8, top_k=3, vision_depth=3, deepstack=(0, 2)),
}


def audio_tokens(frames: int) -> int:
    """spec §2.2: 13 per full 100-frame chunk + ceil-halvings of the tail."""
    tail = frames % 100
    for _ in range(3):
        tail = (tail + 1) // 2
    return 13 * (frames // 100) + tail


def mixed_prompt(row: int, image_grid, audio_frames: int, video_grid) -> list[int]:
    """<im_start>user\\n <vs>IMG<ve> t t <as>AUD<ae> t <vs>VID<ve> t <im_end>\\n<im_start>assistant\\n"""
    n_img = image_grid[0] * image_grid[1] * image_grid[2] // 4
    n_vid = video_grid[0] * video_grid[1] * video_grid[2] // 4
    text = [1000 + 17 * row + i for i in range(4)]
    return ([IDS["im_start"], IDS["user"], IDS["newline"], IDS["vision_start"]] + [IDS["image_pad"]] * n_img
            + [IDS["vision_end"], text[0], text[1], IDS["audio_start"]] + [IDS["audio_pad"]] * audio_tokens(audio_frames)
            + [IDS["audio_end"], text[2], IDS["vision_start"]] + [IDS["video_pad"]] * n_vid
            + [IDS["vision_end"], text[3], IDS["im_end"], IDS["newline"], IDS["im_start"], IDS["assistant"],
               IDS["newline"]])


@pytest.fixture(scope="module", params=sorted(MIXED_CONFIGS))
def mixed_pair(request, tmp_path_factory):
    cfg = tiny_config(enable_audio_output=False, **MIXED_CONFIGS[request.param])
    folder = tmp_path_factory.mktemp(f"thinker_mixed_{request.param}")
    ref = build_reference_checkpoint(folder, cfg, seed=2).thinker.eval()
    ours = OmniModel.from_pretrained(folder, dtype=torch.float32).thinker
    if ours.missing_components():
        pytest.skip(f"encoders not available: {ours.missing_components()}")
    return request.param, ref, ours


def mixed_inputs(seconds_per_grid: float) -> dict[str, torch.Tensor]:
    """Two rows of equal length, each with its own image (odd grid), audio and video (scatter is row-major)."""
    gen = torch.Generator().manual_seed(7)
    image_grids, video_grids = [(1, 4, 6), (1, 6, 4)], [(2, 4, 4), (2, 4, 4)]
    audio_frames = [150, 137]  # 20 and 18 tokens
    rows = [mixed_prompt(r, image_grids[r], audio_frames[r], video_grids[r]) for r in range(2)]
    assert len(rows[0]) == len(rows[1]) + 2
    rows[1] = rows[1][:3] + [2000, 2001] + rows[1][3:]  # pad row 1 with text to equal length
    features = torch.randn(2, 128, max(audio_frames), generator=gen)
    feature_mask = torch.zeros(2, max(audio_frames), dtype=torch.long)
    for b, n in enumerate(audio_frames):
        feature_mask[b, :n] = 1
    patches = lambda grids: torch.randn(sum(t * h * w for t, h, w in grids), 1536, generator=gen)
    return dict(input_ids=torch.tensor(rows), input_features=features, feature_attention_mask=feature_mask,
                pixel_values=patches(image_grids), image_grid_thw=torch.tensor(image_grids),
                pixel_values_videos=patches(video_grids), video_grid_thw=torch.tensor(video_grids),
                video_second_per_grid=torch.tensor([seconds_per_grid, seconds_per_grid]))


@pytest.mark.parametrize("seconds_per_grid", [1.0, 0.5])  # 0.5 → fractional temporal positions (spec §3.4)
@torch.no_grad()
def test_mixed_media_logits_match_reference(mixed_pair, seconds_per_grid):
    name, ref, ours = mixed_pair
    inputs = mixed_inputs(seconds_per_grid)
    ids = inputs["input_ids"]
    mask = torch.ones_like(ids)
    expected = ref(attention_mask=mask, **inputs).logits
    positions, _ = ref.model.get_rope_index(ids, inputs["image_grid_thw"], inputs["video_grid_thw"], mask,
                                            False, inputs["feature_attention_mask"].sum(-1),
                                            inputs["video_second_per_grid"])
    media = {k: v for k, v in inputs.items() if k != "video_second_per_grid"}
    embeds, visual_mask, deepstack = ours.embed(**media)
    assert len(deepstack) == len(MIXED_CONFIGS[name]["deepstack"])
    hidden, _ = ours(embeds, positions, visual_mask=visual_mask, deepstack=deepstack)
    logits = ours.compute_logits(hidden)
    err = relative_error(logits, expected)
    print(f"\n[thinker mixed {name} s/grid={seconds_per_grid}] max|Δ logits| / max|logits| = {err:.2e}")
    assert err < 1e-5
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


@torch.no_grad()
def test_placeholder_count_mismatch_is_typed_error(mixed_pair):
    from omnistream.errors import OmniInputError

    _, _, ours = mixed_pair
    inputs = mixed_inputs(1.0)
    inputs.pop("video_second_per_grid")
    ids = inputs["input_ids"].clone()
    ids[0, ids[0].tolist().index(IDS["image_pad"])] = 1000  # one image placeholder too few
    with pytest.raises(OmniInputError, match="image"):
        ours.embed(**{**inputs, "input_ids": ids})
