"""Vision encoder vs transformers' `thinker.visual`, fp32, on checkpoints the reference saved (spec §2.3).

Tokens and every deepstack feature are compared. Grids mix odd shapes, a video, and layouts that drive
each segment-attention mode (one segment, equal frames, ragged frames, block-diagonal).
"""
import pytest
import torch

from omnistream.checkpoint import load_checkpoint, params_on_meta
from omnistream.config import VisionEncoderConfig
from omnistream.errors import OmniInputError
from omnistream.models.vision_encoder import VisionEncoder
from tests.reference import assert_relative_parity, build_reference_checkpoint, load_reference, tiny_config

pytestmark = pytest.mark.parity


CONFIGS = {
    "depth2-deepstack0": dict(vision_depth=2, deepstack=(0,)),
    "depth4-deepstack1-3": dict(vision_depth=4, deepstack=(1, 3)),
    "depth3-deepstack2-0": dict(vision_depth=3, deepstack=(2, 0)),  # unsorted: features come in block order
}


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def encoders(request, tmp_path_factory):
    """(ours, reference) vision encoders from one saved checkpoint."""
    cfg = tiny_config(enable_audio_output=False, **CONFIGS[request.param])
    cfg["thinker_config"]["text_config"]["vocab_size"] = 512  # the LM is not under test: keep the build quick
    if request.param.startswith("depth4"):
        cfg["thinker_config"]["vision_config"]["num_heads"] = 4
    folder = tmp_path_factory.mktemp(request.param)
    build_reference_checkpoint(folder, cfg, seed=len(request.param))
    reference = load_reference(folder).thinker.model.visual
    with params_on_meta():
        ours = VisionEncoder(VisionEncoderConfig.from_dict(cfg["thinker_config"]["vision_config"]))
    load_checkpoint(ours, folder, dtype=torch.float32, key_prefix="thinker.visual.",
                    ignore_prefixes=("thinker.model.", "thinker.lm_head.", "thinker.audio_tower."))
    return ours.eval(), reference


@pytest.mark.parametrize("grids", [
    [(1, 4, 6), (1, 6, 2), (3, 4, 4)],   # odd images and a 3-slice video: ragged frames
    [(1, 8, 10)],                        # one image, larger than the 4×4 position grid: one segment
    [(4, 2, 4)],                         # a video alone: equal frames
    [(1, 12, 8), (1, 2, 2), (2, 2, 2)],  # one big frame beside tiny ones: block-diagonal mask
], ids=["mixed", "single", "video", "tiny-frames"])
def test_matches_reference(encoders, grids):
    ours, reference = encoders
    grid_thw = torch.tensor(grids)
    pixels = torch.randn(int(grid_thw.prod(-1).sum()), ours.cfg.patch_dim)
    with torch.no_grad():
        tokens, deepstack = ours(pixels, grid_thw)
        want = reference(pixels, grid_thw=grid_thw)
    assert tokens.shape == (pixels.shape[0] // 4, ours.cfg.out_hidden_size)
    assert_relative_parity(tokens, want.pooler_output)
    assert len(deepstack) == len(want.deepstack_features) == len(ours.cfg.deepstack_visual_indexes)
    for got, expected in zip(deepstack, want.deepstack_features):
        assert_relative_parity(got, expected)


def test_images_do_not_interact(encoders):
    """A batch equals its images run one by one (segments keep images and frames apart)."""
    ours, _ = encoders
    grids = [(1, 4, 6), (2, 2, 4)]
    pixels = torch.randn(24 + 16, ours.cfg.patch_dim)
    with torch.no_grad():
        together, _ = ours(pixels, torch.tensor(grids))
        first, _ = ours(pixels[:24], torch.tensor(grids[:1]))
        second, _ = ours(pixels[24:], torch.tensor(grids[1:]))
    torch.testing.assert_close(together, torch.cat([first, second]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grids, patches, field", [
    ([(1, 4, 6)], 23, "pixel_values"),
    ([(1, 3, 4)], 12, "grid_thw"),
    ([(0, 4, 4)], 0, "grid_thw"),
])
def test_bad_inputs_name_the_field(encoders, grids, patches, field):
    ours, _ = encoders
    with pytest.raises(OmniInputError) as err:
        ours(torch.zeros(patches, ours.cfg.patch_dim), torch.tensor(grids))
    assert err.value.param == field
