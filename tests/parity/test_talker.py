"""Talker parity: omnistream's Talker, loaded from a transformers-written random checkpoint, reproduces the
reference in fp32 — logits under fractional TM-RoPE positions, cached decoding, the thinker → talker
projections, the summed frame embedding, and the prompt that the reference's generate() assembles (spec §1.1).
"""
from __future__ import annotations

import pytest
import torch

from omnistream.config import OmniConfig
from omnistream.errors import OmniInputError, RequestError
from omnistream.inputs.positions import rope_index
from omnistream.inputs.settings import TokenIds
from omnistream.models.talker import Talker, TalkerPromptIds, build_talker_prompt, user_turn_positions
from tests.reference import IDS, build_reference_checkpoint, tiny_config, load_component

pytestmark = pytest.mark.parity

CONFIGS = {
    "base": dict(),
    "e8_top3_3layers": dict(talker_experts=8, talker_top_k=3, talker_layers=3, code_groups=8, codebook=64),
    "e6_top1": dict(talker_experts=6, talker_top_k=1, code_groups=16),
}


def load_talker(folder) -> Talker:
    return load_component(folder, lambda config: Talker(config.talker_config), "talker.", ("thinker.", "code2wav."))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    cfg = tiny_config(**CONFIGS[request.param])
    folder = tmp_path_factory.mktemp(f"talker_{request.param}")
    full = build_reference_checkpoint(folder, cfg, seed=3)
    return request.param, full, load_talker(folder), OmniConfig.from_file(folder)


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


def _embeds_and_positions(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, length, 32, generator=gen)
    positions = torch.cumsum(torch.rand(3, batch, length, generator=gen) * 3, dim=-1)  # distinct, fractional
    return embeds, positions


@torch.no_grad()
def test_logits_match_reference(pair):
    name, full, ours, _ = pair
    embeds, positions = _embeds_and_positions(2, 13, seed=1)
    expected = full.talker(inputs_embeds=embeds, position_ids=positions).logits
    logits = ours.compute_logits(ours(embeds, positions))
    err = relative_error(logits, expected)
    print(f"\n[talker {name}] max|Δ logits|/max|logits| = {err:.2e} (scale {expected.abs().max():.1f})")
    assert err < 1e-5
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))


@torch.no_grad()
def test_cached_decode_matches_reference(pair):
    """Prefill 10 positions into a KV cache, then decode 3 one at a time: the reference's full-sequence logits."""
    name, full, ours, _ = pair
    embeds, positions = _embeds_and_positions(2, 13, seed=2)
    expected = full.talker(inputs_embeds=embeds, position_ids=positions).logits
    cache = ours.new_cache(num_slots=2, max_len=16)
    steps = [(0, 10), (10, 11), (11, 12), (12, 13)]
    for start, end in steps:
        cache_positions = torch.arange(start, end).expand(2, -1)
        hidden = ours(embeds[:, start:end], positions[:, :, start:end], cache=cache, cache_positions=cache_positions,
                      kv_len=end)
        assert relative_error(ours.compute_logits(hidden), expected[:, start:end]) < 1e-5


@torch.no_grad()
def test_projections_and_frame_embedding(pair):
    name, full, ours, _ = pair
    ref = full.talker
    x = torch.randn(5, 32)
    torch.testing.assert_close(ours.project_text(x), ref.text_projection(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.project_hidden(x), ref.hidden_projection(x), rtol=1e-6, atol=1e-6)
    Q, V = ours.config.num_code_groups, ours.config.codebook_size
    codes = torch.randint(0, V, (3, Q))
    parts = [ref.model.codec_embedding(codes[:, :1])]
    parts += [ref.code_predictor.model.codec_embedding[q - 1](codes[:, q: q + 1]) for q in range(1, Q)]
    expected = torch.cat(parts, dim=1).sum(1)  # how the reference forms the next step's codec input
    assert torch.equal(ours.frame_embedding(codes), expected)


# --------------------------------------------------------------------------------------------- prompt
def _conversation(seed: int) -> tuple[torch.Tensor, int]:
    """system turn + user turn (20 audio tokens, a 2×2 image, text) + assistant header; returns ids, #audio."""
    gen = torch.Generator().manual_seed(seed)

    def text(n: int) -> list[int]:
        return torch.randint(0, 151_000, (n,), generator=gen).tolist()

    nl = IDS["newline"]
    ids = [IDS["im_start"], IDS["system"], nl, *text(4), IDS["im_end"], nl,
           IDS["im_start"], IDS["user"], nl, IDS["audio_start"], *[IDS["audio_pad"]] * 20, IDS["audio_end"],
           IDS["vision_start"], *[IDS["image_pad"]] * 4, IDS["vision_end"], *text(3), IDS["im_end"], nl,
           IDS["im_start"], IDS["assistant"], nl]
    return torch.tensor([ids]), 20


def _run_reference_generate(full, input_ids: torch.Tensor) -> dict:
    """Run generate(return_audio=True) greedily, capturing the thinker result and the talker's inputs and result."""
    captured: dict = {}
    thinker_generate, talker_generate = full.thinker.generate, full.talker.generate

    def thinker_spy(*args, **kwargs):
        captured["thinker"] = thinker_generate(*args, **kwargs)
        return captured["thinker"]

    def talker_spy(*args, **kwargs):
        captured["talker_kwargs"] = kwargs
        captured["talker"] = talker_generate(*args, **kwargs)
        return captured["talker"]

    gen = torch.Generator().manual_seed(7)
    full.thinker.generate, full.talker.generate = thinker_spy, talker_spy
    try:
        full.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                      input_features=torch.randn(1, 128, 150, generator=gen),
                      feature_attention_mask=torch.ones(1, 150, dtype=torch.long),
                      pixel_values=torch.randn(16, 1536, generator=gen), image_grid_thw=torch.tensor([[1, 4, 4]]),
                      speaker="Ethan", thinker_max_new_tokens=5, thinker_do_sample=False,
                      talker_max_new_tokens=4, talker_min_new_tokens=3, talker_do_sample=False,
                      talker_repetition_penalty=1.0)
    finally:
        del full.thinker.generate, full.talker.generate  # drop the instance attributes: class methods again
    return captured


@pytest.fixture(scope="module")
def generated(pair):
    name, full, ours, config = pair
    input_ids, _ = _conversation(seed=11)
    with torch.no_grad():
        return _run_reference_generate(full, input_ids), input_ids


@torch.no_grad()
def test_prompt_matches_reference_generate(pair, generated):
    """Prefill embeddings (user turns + 9-position header), talker ids, trailing text and tts_pad: as generate()."""
    name, full, ours, config = pair
    captured, input_ids = generated
    thinker_result, kwargs = captured["thinker"], captured["talker_kwargs"]
    accept = config.talker_config.accept_hidden_layer
    E = torch.cat([h[0] for h in thinker_result.hidden_states], dim=1)[0]  # [T + n − 1, D]
    H = torch.cat([h[accept] for h in thinker_result.hidden_states], dim=1)[0]
    T, n = input_ids.shape[1], thinker_result.sequences.shape[1] - input_ids.shape[1]
    assert n >= 3, "the reference thinker stopped too early for this check"
    special = full.thinker.get_input_embeddings()(torch.tensor([IDS["tts_bos"], IDS["tts_eos"], IDS["tts_pad"]]))
    ids = TalkerPromptIds.from_config(config)
    prompt = build_talker_prompt(ours, input_ids[0], E[:T], H[:T], E[T], special, ids, speaker="Ethan")

    expected = kwargs["inputs_embeds"][0]
    assert prompt.inputs_embeds.shape == expected.shape == (36 + 9, 32)  # user turn: 36 tokens (20 audio, 4 image)
    err = relative_error(prompt.inputs_embeds, expected)
    print(f"\n[talker prompt {name}] max|Δ prefill|/max = {err:.2e}, {expected.shape[0]} positions")
    assert err < 1e-6
    assert torch.equal(prompt.input_ids, kwargs["talker_input_ids"][0])
    trailing = torch.cat([prompt.trailing_text, ours.project_text(E[T + 1:]), prompt.tts_eos_embed[None]])
    assert trailing.shape == kwargs["trailing_text_hidden"][0].shape == (n - 1, 32)
    assert relative_error(trailing, kwargs["trailing_text_hidden"][0]) < 1e-6
    assert relative_error(prompt.tts_pad_embed, kwargs["tts_pad_embed"][0, 0]) < 1e-6


@torch.no_grad()
def test_greedy_frames_match_reference_generate(pair, generated):
    """Our talker + code predictor, stepped greedily from our prompt with positions from omnistream.inputs,
    emit the reference's frames: prefill, frame embeddings, text track and the code-predictor loop together."""
    name, full, ours, config = pair
    captured, input_ids = generated
    thinker_result = captured["thinker"]
    E = torch.cat([h[0] for h in thinker_result.hidden_states], dim=1)[0]
    H = torch.cat([h[config.talker_config.accept_hidden_layer] for h in thinker_result.hidden_states], dim=1)[0]
    T = input_ids.shape[1]
    special = full.thinker.get_input_embeddings()(torch.tensor([IDS["tts_bos"], IDS["tts_eos"], IDS["tts_pad"]]))
    prompt = build_talker_prompt(ours, input_ids[0], E[:T], H[:T], E[T], special,
                                 TalkerPromptIds.from_config(config), speaker="ethan")
    token_ids = TokenIds.from_config(config, lambda s: IDS["endoftext"] if s == "<|endoftext|>" else None)
    positions, delta = rope_index(prompt.input_ids[None], None, token_ids, image_grid_thw=torch.tensor([[1, 4, 4]]),
                                  audio_lengths=[150], position_id_per_seconds=config.talker_config.position_id_per_seconds)
    text_track = torch.cat([prompt.trailing_text, ours.project_text(E[T + 1:]), prompt.tts_eos_embed[None]])
    expected = torch.stack([h[-1] for h in captured["talker"].hidden_states if h[-1] is not None], dim=1)[0]

    # generate() suppresses the codec special ids except EOS, and EOS too for the first min_new_tokens (3)
    # steps — which are all the frames compared here.
    vocab = ours.config.text_config.vocab_size
    suppressed = torch.arange(vocab) >= vocab - 1024
    cache = ours.new_cache(1, 64)
    length = prompt.inputs_embeds.shape[0]
    hidden = ours(prompt.inputs_embeds[None], positions, cache=cache,
                  cache_positions=torch.arange(length)[None], kv_len=length)[:, -1]
    frames = []
    for step in range(expected.shape[0]):
        code0 = ours.compute_logits(hidden).masked_fill(suppressed, float("-inf")).argmax(-1)  # [1]
        residual = ours.code_predictor.predict_frame(hidden, ours.model.codec_embedding(code0))
        frames.append(torch.cat([code0[:, None], residual], dim=1))
        text = text_track[step] if step < text_track.shape[0] else prompt.tts_pad_embed
        position = torch.full((3, 1, 1), length + step + float(delta[0]))
        hidden = ours((ours.frame_embedding(frames[-1]) + text)[:, None], position, cache=cache,
                      cache_positions=torch.tensor([[length + step]]), kv_len=length + step + 1)[:, -1]
    assert torch.equal(torch.cat(frames), expected)


def test_prompt_errors_name_the_field(pair):
    name, full, ours, config = pair
    ids = TalkerPromptIds.from_config(config)
    with pytest.raises(RequestError) as err:
        ids.speaker_id("nobody")
    assert err.value.param == "speaker"
    no_assistant = torch.tensor([IDS["im_start"], IDS["user"], IDS["newline"], 5, IDS["im_end"]])
    E = torch.zeros(5, 32)
    with pytest.raises(OmniInputError) as err:
        build_talker_prompt(ours, no_assistant, E, E, E[0], torch.zeros(3, 32), ids, "ethan")
    assert err.value.param == "input_ids"


def test_user_turn_selection() -> None:
    """Only tokens of user turns, from their <|im_start|> through the newline after <|im_end|>."""
    cfg = OmniConfig.from_dict(tiny_config())
    ids = TalkerPromptIds.from_config(cfg)
    s, u, a, e, nl = IDS["im_start"], IDS["user"], IDS["assistant"], IDS["im_end"], IDS["newline"]
    sys_ = IDS["system"]
    tokens = torch.tensor([s, sys_, nl, 7, e, nl, s, u, nl, 8, e, nl, s, a, nl, 9, e, nl, s, u, nl, 10, e, nl, s, a, nl])
    assert user_turn_positions(tokens, ids).tolist() == [6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23]
