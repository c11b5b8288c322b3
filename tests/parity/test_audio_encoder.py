"""AuT audio encoder vs transformers' `thinker.audio_tower`, fp32, on checkpoints the reference saved (spec §2.2).

Our module is loaded from the saved safetensors through omnistream's own loader. Random mel features are
enough: the encoder is a function of the features, whatever produced them.
"""
import pytest
import torch

from omnistream.checkpoint import load_checkpoint, params_on_meta
from omnistream.config import AudioEncoderConfig
from omnistream.models.audio_encoder import AudioEncoder, audio_token_count, plan_chunks
from tests.reference import assert_relative_parity, build_reference_checkpoint, load_reference, tiny_config

pytestmark = pytest.mark.parity



def _config(layers: int, heads: int) -> dict:
    cfg = tiny_config(audio_layers=layers, enable_audio_output=False)
    cfg["thinker_config"]["audio_config"]["encoder_attention_heads"] = heads
    cfg["thinker_config"]["text_config"]["vocab_size"] = 512  # the LM is not under test: keep the build quick
    return cfg


@pytest.fixture(scope="module", params=[(1, 2), (2, 4)], ids=["1layer-2heads", "2layers-4heads"])
def encoders(request, tmp_path_factory):
    """(ours, reference) audio encoders from one saved checkpoint."""
    layers, heads = request.param
    cfg = _config(layers, heads)
    folder = tmp_path_factory.mktemp(f"audio_{layers}_{heads}")
    build_reference_checkpoint(folder, cfg, seed=layers)
    reference = load_reference(folder).thinker.model.audio_tower
    with params_on_meta():
        ours = AudioEncoder(AudioEncoderConfig.from_dict(cfg["thinker_config"]["audio_config"]))
    load_checkpoint(ours, folder, dtype=torch.float32, key_prefix="thinker.audio_tower.",
                    ignore_prefixes=("thinker.model.", "thinker.lm_head.", "thinker.visual."))
    return ours.eval(), reference


def _run_both(ours, reference, lens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ours on a padded batch (with junk past each length), the reference on its concatenated layout."""
    feats = torch.randn(len(lens), 128, max(lens) + 7)
    for b, n in enumerate(lens):
        feats[b, :, n:] = 1e3  # must be ignored
    lengths = torch.tensor(lens)
    with torch.no_grad():
        got = ours(feats, lengths)
        flat = torch.cat([feats[b, :, :n] for b, n in enumerate(lens)], dim=1)  # [mel, sum F]
        want = reference(flat, feature_lens=lengths).last_hidden_state
    return got, want


@pytest.mark.parametrize("lens", [
    [37, 137, 300],        # 0.37 s, 1.37 s, 3 s: tails of 37 frames padded to 100 (spec §2.2 trap)
    [950, 37, 880, 300],   # 9.5 s and 8.8 s span two 104-token windows: ragged windows
    [800, 1600],           # three full 104-token windows: equal segments
    [37],                  # alone, the 0.37 s tail is padded only to 37 frames
    [200],                 # whole chunks only, one window
])
def test_matches_reference(encoders, lens):
    ours, reference = encoders
    got, want = _run_both(ours, reference, lens)
    assert got.shape[0] == sum(audio_token_count(n) for n in lens)
    assert_relative_parity(got, want)


def test_tail_padding_follows_the_batch(encoders):
    """The same 0.37 s audio gives different last tokens alone and beside a longer one, in the reference too:
    the case above that runs it alone and the one that batches it both test something."""
    ours, reference = encoders
    feats = torch.randn(2, 128, 137)
    short = feats[1:, :, :37]
    with torch.no_grad():
        alone = ours(short, torch.tensor([37]))
        batched = ours(feats, torch.tensor([137, 37]))[audio_token_count(137):]  # padded to 100 frames
        ref_alone = reference(short[0], feature_lens=torch.tensor([37])).last_hidden_state
    assert (alone - batched).abs().max() > 1e-4 * alone.abs().max()
    assert_relative_parity(alone, ref_alone)


def test_windows_and_counts():
    # spec §2.2: 30 s → 390 tokens in windows [104, 104, 104, 78]; N = 13·⌊F/100⌋ + ⌈(F mod 100)/8⌉
    plan = plan_chunks([3000], n_window=50, n_window_infer=800)
    assert plan.cu_seqlens == [0, 104, 208, 312, 390]
    assert [audio_token_count(f) for f in (150, 100, 250, 37, 1)] == [20, 13, 33, 5, 1]
    for frames in range(1, 1000):
        assert audio_token_count(frames) == 13 * (frames // 100) + -(-(frames % 100) // 8)


def test_token_count_matches_reference_formula():
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

    frames = torch.arange(1, 3001)
    want = _get_feat_extract_output_lengths(frames).tolist()
    assert [audio_token_count(int(f)) for f in frames] == want
