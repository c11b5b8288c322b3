"""DecoderLayer: MoE vs dense choice from the config, and the pre-norm residual formula."""
import torch

from omnistream.config import TextDecoderConfig
from omnistream.nn.decoder_layer import DecoderLayer
from omnistream.nn.mlp import SwiGLU
from omnistream.nn.moe import SparseMoe
from omnistream.nn.rope import RotaryEmbedding
from tests.reference import tiny_config


def _text_cfg(**overrides):
    d = tiny_config()["thinker_config"]["text_config"]
    d.update(overrides)
    return TextDecoderConfig.from_dict(d, "text_config")


def test_moe_or_dense_per_layer():
    cfg = _text_cfg(mlp_only_layers=[1], num_hidden_layers=3)
    kinds = [type(DecoderLayer.from_config(cfg, i).mlp) for i in range(3)]
    assert kinds == [SparseMoe, SwiGLU, SparseMoe]


def test_pre_norm_residual_formula():
    layer = DecoderLayer.from_config(_text_cfg(), 0).eval()
    x = torch.randn(2, 5, 32)
    cos, sin = RotaryEmbedding(8, 1e6)(torch.arange(5).expand(2, 5), torch.float32)
    with torch.no_grad():
        h = x + layer.self_attn(layer.input_layernorm(x), cos, sin)
        expected = h + layer.mlp(layer.post_attention_layernorm(h))
        torch.testing.assert_close(layer(x, cos, sin), expected, rtol=0, atol=0)
