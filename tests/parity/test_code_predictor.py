"""Code-predictor parity: omnistream's CodePredictor (loaded from a transformers-written checkpoint) gives the
reference's logits at every residual step, and its cached frame loop picks the same codes as the reference's
nested `generate` (greedy), in fp32 (spec §2.5)."""
from __future__ import annotations

import pytest
import torch

from omnistream.models.talker import Talker
from tests.reference import build_reference_checkpoint, tiny_config, load_component

pytestmark = pytest.mark.parity

CONFIGS = {
    "q4_cb32_1layer": dict(code_groups=4, codebook=32, cp_layers=1),
    "q8_cb64_2layers": dict(code_groups=8, codebook=64, cp_layers=2),
    "q16_cb32_2layers": dict(code_groups=16, codebook=32, cp_layers=2),
}


def load_talker(folder) -> Talker:
    return load_component(folder, lambda config: Talker(config.talker_config), "talker.", ("thinker.", "code2wav."))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    cfg = tiny_config(**CONFIGS[request.param])
    folder = tmp_path_factory.mktemp(f"cp_{request.param}")
    ref = build_reference_checkpoint(folder, cfg, seed=4).talker
    return request.param, ref, load_talker(folder)


def _frame_inputs(ref_talker, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A talker-like final-norm hidden state h and the embedding of a code-0 [B, C] each."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, ref_talker.config.text_config.hidden_size, generator=gen)
    code0 = torch.randint(0, ref_talker.config.code_predictor_config.vocab_size, (batch,), generator=gen)
    return hidden, ref_talker.model.codec_embedding(code0)


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@torch.no_grad()
def test_step_logits_match_reference_forward(pair):
    """Full-sequence forward: position q+1's hidden through lm_head[q] at every step q."""
    name, ref, ours = pair
    ref_cp, cp = ref.code_predictor, ours.code_predictor
    Q = cp.config.num_code_groups
    hidden, code0_embed = _frame_inputs(ref, 2, seed=1)
    codes = torch.randint(0, cp.config.vocab_size, (2, Q - 2), generator=torch.Generator().manual_seed(2))
    residual = [ref_cp.model.codec_embedding[q](codes[:, q]) for q in range(Q - 2)]
    seq = torch.stack([hidden, code0_embed, *residual], dim=1)  # [B, Q, C]
    expected_hidden = ref_cp.model(inputs_embeds=seq).last_hidden_state
    ours_hidden = cp(seq, torch.arange(Q).expand(2, Q))
    errors = []
    for step in range(Q - 1):
        expected = ref_cp.lm_head[step](expected_hidden[:, step + 1])
        errors.append(relative_error(cp.compute_logits(ours_hidden[:, step + 1], step), expected))
    print(f"\n[code predictor {name}] max over {Q - 1} steps of max|Δ logits|/max|logits| = {max(errors):.2e}")
    assert max(errors) < 1e-5


@torch.no_grad()
def test_predict_frame_matches_reference_generate(pair):
    """Greedy codes of our fixed-cache loop == the reference's nested generate, batched over 3 rows."""
    name, ref, ours = pair
    Q = ours.code_predictor.config.num_code_groups
    hidden, code0_embed = _frame_inputs(ref, 3, seed=3)
    expected = ref.code_predictor.generate(inputs_embeds=torch.stack([hidden, code0_embed], dim=1),
                                           max_new_tokens=Q - 1, do_sample=False)
    codes = ours.code_predictor.predict_frame(hidden, code0_embed)
    assert codes.shape == (3, Q - 1)
    assert torch.equal(codes, expected[:, -(Q - 1):])


@torch.no_grad()
def test_sample_fn_steps_and_cached_logits(pair):
    """A non-greedy sample_fn: each step gets lm_head[step]'s logits for the codes it chose, equal to the
    reference's full forward over those codes; a reused cache gives the same frame again."""
    name, ref, ours = pair
    cp, ref_cp = ours.code_predictor, ref.code_predictor
    Q = cp.config.num_code_groups
    hidden, code0_embed = _frame_inputs(ref, 2, seed=5)
    seen: list[tuple[int, torch.Tensor]] = []

    def pick_least_likely(logits: torch.Tensor, step: int) -> torch.Tensor:
        seen.append((step, logits.clone()))
        return logits.argmin(dim=-1)

    cache = cp.new_cache(2)
    codes = cp.predict_frame(hidden, code0_embed, pick_least_likely, cache)
    assert [step for step, _ in seen] == list(range(Q - 1))
    residual = [ref_cp.model.codec_embedding[q](codes[:, q]) for q in range(Q - 2)]
    expected_hidden = ref_cp.model(inputs_embeds=torch.stack([hidden, code0_embed, *residual], 1)).last_hidden_state
    for step, logits in seen:
        assert relative_error(logits, ref_cp.lm_head[step](expected_hidden[:, step + 1])) < 1e-5
    again = cp.predict_frame(hidden, code0_embed, lambda logits, step: logits.argmin(dim=-1), cache)
    assert torch.equal(again, codes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_table_rows_equal_the_rotary(pair, dtype):
    """The predictor reads cos/sin from one table of positions 0..Q−1: the same values, bit for bit, as the
    rotary computed for each step's positions (what the reference does)."""
    _, _, ours = pair
    predictor = ours.code_predictor
    Q = predictor.config.num_code_groups
    for positions in (torch.arange(2).expand(3, 2), torch.full((3, 1), Q - 1), torch.arange(Q)[None]):
        got, want = predictor._cos_sin(positions, dtype), predictor.rotary(positions, dtype)
        assert all(g.dtype == dtype and torch.equal(g, w) for g, w in zip(got, want))
