import pytest
import torch
from conftest import assert_same_step
from course_models import CourseTransformer
from torch import nn

from archbench.errors import ConfigError
from lit_models import DilatedCNN, MultiheadSelfAttention, RecurrentNet, TransformerNet
from lit_models.blocks import EncoderBlock, attention, sinusoidal_positions
from lit_models.checks import parameters_without_gradient
from lit_models.stem import ConvStem, conv_over_positions

torch.manual_seed(0)

ARCHITECTURES = {
    "rnn": lambda: RecurrentNet(4, 3, cell="rnn", hidden_size=8),
    "gru": lambda: RecurrentNet(4, 3, cell="gru", hidden_size=8, num_layers=2),
    "lstm": lambda: RecurrentNet(4, 3, cell="lstm", hidden_size=8, bidirectional=True),
    "lstm_mean": lambda: RecurrentNet(4, 3, cell="lstm", hidden_size=8, pooling="mean"),
    "transformer": lambda: TransformerNet(4, 3, 30, d_model=16, nhead=4, num_layers=2, dim_feedforward=32),
    "transformer_cls_learned": lambda: TransformerNet(
        4, 3, 30, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, pooling="cls", positions="learned"
    ),
    "transformer_post_ln_flatten": lambda: TransformerNet(
        4, 3, 30, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, norm_first=False, pooling="flatten"
    ),
    "transformer_patches": lambda: TransformerNet(
        4, 3, 30, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, patch_length=4, patch_kernel_length=8
    ),
    "transformer_stem": lambda: TransformerNet(
        4,
        3,
        30,
        d_model=16,
        nhead=2,
        num_layers=1,
        dim_feedforward=32,
        stem_channels=8,
        stem_kernel_size=5,
        stem_pool_size=3,
    ),
    "transformer_stem_and_patches": lambda: TransformerNet(
        4,
        3,
        30,
        d_model=16,
        nhead=2,
        num_layers=1,
        dim_feedforward=32,
        stem_channels=8,
        stem_pool_size=2,
        patch_length=2,
    ),
    "lstm_stem": lambda: RecurrentNet(4, 3, cell="lstm", hidden_size=8, stem_channels=6, stem_pool_size=4),
    "cnn": lambda: DilatedCNN(4, 3, channels=8, num_blocks=3),
    "cnn_full_resolution_max": lambda: DilatedCNN(
        4, 3, channels=8, num_blocks=3, stem_pool_size=1, pooling="max"
    ),
}


def _batch(lengths, L=30):
    x = torch.zeros(len(lengths), L, 4)
    for i, n in enumerate(lengths):
        x[i, torch.arange(n), torch.randint(0, 4, (n,))] = 1.0
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    net = ARCHITECTURES[name]()
    x, lengths = _batch([30, 17, 5])
    out = net(x, lengths)
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_padding_does_not_change_the_output(name):
    """A sequence alone and the same sequence padded inside a batch give the same output."""
    net = ARCHITECTURES[name]().eval()
    for n in (12, 13):  # one length that divides the patch/pool sizes, one that does not
        x, lengths = _batch([30, n])
        with torch.no_grad():
            together = net(x, lengths)[1]
            alone = net(x[1:2, :n], lengths[1:2])[0]
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [dict(padding="same"), dict(padding="same", dilation=4), dict(padding=2, stride=2), dict(padding=0)],
)
def test_convolution_over_positions_equals_conv1d_on_the_transposed_input(kwargs):
    conv = nn.Conv1d(6, 5, 3, **kwargs).double()
    h = torch.randn(3, 17, 6, dtype=torch.float64, requires_grad=True)
    ours = conv_over_positions(conv, h)
    reference = conv(h.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), h)
    (g_reference,) = torch.autograd.grad(reference.square().sum(), h)
    torch.testing.assert_close(g_ours, g_reference, rtol=0, atol=1e-12)


def test_stem_equals_conv_relu_mask_and_ceil_mode_max_pool():
    stem = ConvStem(4, 8, kernel_size=5, pool_size=3).double()
    x, lengths = torch.randn(4, 16, 4, dtype=torch.float64), torch.tensor([16, 11, 7, 1])
    h, new_lengths = stem(x, lengths)
    keep = (torch.arange(16)[None, :] < lengths[:, None]).double()[:, None, :]
    reference = torch.relu(stem.conv(x.transpose(1, 2))) * keep
    reference = torch.nn.functional.max_pool1d(reference, 3, ceil_mode=True).transpose(1, 2)
    torch.testing.assert_close(h, reference, rtol=0, atol=1e-12)
    assert h.is_contiguous() and new_lengths.tolist() == [6, 4, 3, 1]


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("with_mask", [True, False])
def test_encoder_block_matches_torch_transformer_encoder_layer(norm_first, with_mask):
    torch.manual_seed(1)
    d, heads, ff = 16, 4, 24
    ref = nn.TransformerEncoderLayer(
        d, heads, ff, dropout=0.0, batch_first=True, norm_first=norm_first
    ).double()
    ours = EncoderBlock(d, heads, ff, dropout=0.0, activation="relu", norm_first=norm_first).double()
    ours.attn.qkv.weight.data.copy_(ref.self_attn.in_proj_weight)
    ours.attn.qkv.bias.data.copy_(ref.self_attn.in_proj_bias)
    ours.attn.proj.load_state_dict(ref.self_attn.out_proj.state_dict())
    for name in ("linear1", "linear2", "norm1", "norm2"):
        getattr(ours, name).load_state_dict(getattr(ref, name).state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.randn(3, 7, d, dtype=torch.float64)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])
    ref.eval(), ours.eval()
    expected = ref(x, src_key_padding_mask=~mask if with_mask else None)
    got = ours(x, mask if with_mask else None)
    if with_mask:  # torch's fast path may zero padded rows; only real positions are defined
        expected, got = expected[mask], got[mask]
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(2)
    ref = nn.MultiheadAttention(12, 3, batch_first=True).double()
    ours = MultiheadSelfAttention(12, 3).double()
    ours.qkv.weight.data.copy_(ref.in_proj_weight)
    ours.qkv.bias.data.copy_(ref.in_proj_bias)
    ours.proj.load_state_dict(ref.out_proj.state_dict())
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    expected, _ = ref(x, x, x, key_padding_mask=~mask, need_weights=False)
    torch.testing.assert_close(ours(x, mask), expected, atol=1e-10, rtol=1e-10)


def test_sinusoidal_positions_formula():
    pe = sinusoidal_positions(10, 6)
    pos, i = 7, 1
    assert pe[pos, 2 * i].item() == pytest.approx(
        torch.sin(torch.tensor(pos / 10000 ** (2 * i / 6))).item(), abs=1e-6
    )
    assert pe[pos, 2 * i + 1].item() == pytest.approx(
        torch.cos(torch.tensor(pos / 10000 ** (2 * i / 6))).item(), abs=1e-6
    )


def test_course_parameter_counts():
    """The course's three DNA models (SEEDS.md section 1), rebuilt from the project's architectures."""
    rnn = RecurrentNet(4, 1, cell="rnn", hidden_size=256, num_layers=2)
    lstm = RecurrentNet(4, 1, cell="lstm", hidden_size=256, num_layers=1)
    transformer = TransformerNet(
        4,
        1,
        250,
        d_model=4,
        nhead=4,
        num_layers=6,
        dim_feedforward=2048,
        dropout=0.1,
        attention_dropout=0.1,
        activation="relu",
        norm_first=False,
        positions="none",
        pooling="flatten",
        input_projection=False,
    )
    counts = [sum(p.numel() for p in m.parameters()) for m in (rnn, lstm, transformer)]
    assert counts == [198_913, 268_545, 112_193]
    reference = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d_model=4, nhead=4), num_layers=6, enable_nested_tensor=False
    )
    assert sum(p.numel() for p in reference.parameters()) + 4 * 250 + 1 == 112_193


def test_unused_parameter_check_catches_the_course_bug():
    net = CourseTransformer(4, 1, 30)
    x, lengths = _batch([30, 30])
    unused = parameters_without_gradient(net, lambda: net(x, lengths).sum())
    assert unused and all(n.startswith("encoder.") for n in unused)
    assert len(unused) == sum(1 for n, _ in net.named_parameters() if n.startswith("encoder."))


def test_unused_parameter_check_passes_and_leaves_no_trace():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng_before = torch.get_rng_state()
    assert parameters_without_gradient(net, lambda: net(torch.randn(8, 4)).sum()) == []
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm stats restored
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(p.grad is None for p in net.parameters())  # nothing accumulated


@pytest.mark.parametrize("with_padding", [False, True])
def test_causal_attention_matches_torch_multihead_attention(with_padding):
    torch.manual_seed(3)
    ref = nn.MultiheadAttention(12, 3, batch_first=True).double()
    ours = MultiheadSelfAttention(12, 3).double()
    ours.qkv.weight.data.copy_(ref.in_proj_weight)
    ours.qkv.bias.data.copy_(ref.in_proj_bias)
    ours.proj.load_state_dict(ref.out_proj.state_dict())
    x = torch.randn(2, 6, 12, dtype=torch.float64)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True = may not attend
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2]) if with_padding else None
    expected, _ = ref(
        x, x, x, attn_mask=future, key_padding_mask=None if mask is None else ~mask, need_weights=False
    )
    torch.testing.assert_close(ours(x, mask, causal=True), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_course_scaled_dot_product_attention_vector(dtype):
    """SEEDS.md section 2: batch 1, 3 positions, 1 head, k=4, no dropout; the output is exact."""
    q = torch.tensor([[12, 2, 17, 88], [1, 43, 13, 7], [69, 48, 18, 55]], dtype=dtype)
    k = torch.tensor([[10, 99, 65, 10], [85, 6, 114, 53], [25, 5, 3, 4]], dtype=dtype)
    v = torch.tensor([[33, 32, 18, 3], [36, 77, 90, 37], [19, 47, 72, 39]], dtype=dtype)
    out = attention(q[None, None], k[None, None], v[None, None])[0, 0]
    expected = torch.tensor([[36, 77, 90, 37], [33, 32, 18, 3], [36, 77, 90, 37]], dtype=dtype)
    assert torch.equal(out, expected)


def test_warmup_cosine_equals_lambda_lr_and_takes_groups_added_later():
    import math

    from lit_models.optim import WarmupCosineLR

    def factor(step):  # 5 warm-up steps of 25, then cosine to zero at step 25
        return (step + 1) / 5 if step < 5 else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - 5) / 20)))

    ours_p, torch_p = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    ours_opt, torch_opt = torch.optim.SGD([ours_p], lr=0.1), torch.optim.SGD([torch_p], lr=0.1)
    ours = WarmupCosineLR(ours_opt, warmup_fraction=0.2, total_steps=25)
    reference = torch.optim.lr_scheduler.LambdaLR(torch_opt, factor)
    for step in range(12):
        assert math.isclose(ours_opt.param_groups[0]["lr"], torch_opt.param_groups[0]["lr"], rel_tol=1e-12), (
            step
        )
        ours_opt.step(), torch_opt.step()
        ours.step(), reference.step()
    # a group joining at step 12 with lr 0.01 keeps it, then follows the schedule's shape
    ours_opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01})
    joined_at = factor(12)
    for step in range(13, 20):
        ours_opt.step()
        ours.step()
        assert math.isclose(ours_opt.param_groups[1]["lr"], 0.01 * factor(step) / joined_at, rel_tol=1e-12)
        assert math.isclose(ours_opt.param_groups[0]["lr"], 0.1 * factor(step), rel_tol=1e-12)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_no_lengths_means_every_sequence_is_full_length(name):
    net = ARCHITECTURES[name]().eval()
    x, lengths = _batch([30, 30, 30])
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x, lengths))


@pytest.mark.parametrize("causal", [False, True])
def test_recorded_attention_weights_match_torch(causal):
    """The weights the attention maps draw are torch's per-head weights (float64, 1e-10), pads excluded."""
    torch.manual_seed(4)
    ref = nn.MultiheadAttention(12, 3, batch_first=True).double()
    ours = MultiheadSelfAttention(12, 3).double()
    ours.qkv.weight.data.copy_(ref.in_proj_weight)
    ours.qkv.bias.data.copy_(ref.in_proj_bias)
    ours.proj.load_state_dict(ref.out_proj.state_dict())
    x = torch.randn(2, 6, 12, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    future = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None
    expected_out, expected = ref(
        x, x, x, key_padding_mask=~mask, attn_mask=future, need_weights=True, average_attn_weights=False
    )
    ours.record = True
    out = ours(x, mask, causal=causal)
    torch.testing.assert_close(ours.weights, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out, expected_out, atol=1e-10, rtol=1e-10)


def test_compiled_net_gives_the_eager_loss_and_gradients():
    """--model.compile true: torch.compile (inductor, on the CPU here) through nn.Module.compile, parameter
    names unchanged; one training step's loss and gradients equal the eager net's."""
    from lit_models import PredictionTask

    torch.manual_seed(0)
    compiled = PredictionTask(DilatedCNN(4, 1, channels=4, num_blocks=1, dropout=0.0), compile=True)
    eager = PredictionTask(DilatedCNN(4, 1, channels=4, num_blocks=1, dropout=0.0))
    eager.load_state_dict(compiled.state_dict())
    compiled.setup("fit")
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints stay interchangeable
    x, lengths = _batch([30, 30, 30, 30])
    batch = {"x": x, "lengths": lengths, "y": torch.randn(4)}
    assert_same_step(compiled, eager, batch)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_recurrent_dropout_acts_with_one_layer_and_only_in_training(pooling):
    """torch's GRU/LSTM dropout acts only between stacked layers: a 1-layer net's ``dropout`` did nothing, so a
    sweep over it tuned noise. It now also drops what the head reads."""
    torch.manual_seed(0)
    x = torch.randn(6, 10, 4)
    net = RecurrentNet(4, 3, cell="lstm", hidden_size=16, dropout=0.5, pooling=pooling)
    plain = RecurrentNet(4, 3, cell="lstm", hidden_size=16, pooling=pooling)
    plain.load_state_dict(net.state_dict())  # dropout adds no weights: checkpoints load as before
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval(), plain.eval()
    torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"^model.net.init_args.dropout: -0.3 is outside \[0, 1\)$"):
        RecurrentNet(4, 3, dropout=-0.3)
