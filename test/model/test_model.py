"""The diffusion model on tiny seeded configs (CPU, seconds): shapes, save/load, refusals, seeds,
reference attention (its training: test/training/test_train.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparp_ros.model.attention import ReferenceAttnProcessor
from sparp_ros.model.config import DOMAINS, ModelLoadError, get_config
from sparp_ros.model.diffusion import ModelNocsBackend, SparpDiffusionPipeline, views_to_condition
from sparp_ros.model.unet import SparpDenoiser
from tiny_nets import S, SMALL, small_config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)          # tiny ops: one thread beats two on a shared 2-core machine


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return SparpDiffusionPipeline.from_config(small_config())


def random_condition(num_views: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (S, S, 3), dtype=np.uint8) for _ in range(num_views)]
    masks = [np.pad(np.ones((S - 4, S - 4), bool), 2) for _ in range(num_views)]
    return views_to_condition(images, masks)


# ---------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("num_views", [1, 2, 3, 4, 5, 6])
def test_pipeline_shapes_for_1_to_6_views(pipe, num_views):
    cond, mask = random_condition(num_views)
    assert cond.shape == (3, 3 * S, 2 * S) and mask.shape == (1, 3 * S, 2 * S)
    out = pipe(cond, mask, num_views, "nocs_ref", num_samples=2)
    assert out.shape == (2, 3, 3 * S, 2 * S) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_domain_samples_and_differs(pipe, domain):
    cond, mask = random_condition(3)
    out = pipe(cond, mask, 3, domain, num_samples=1, seed=1)
    assert out.shape == (1, 3, 3 * S, 2 * S)
    if domain != "nocs_ref":
        assert not torch.equal(out, pipe(cond, mask, 3, "nocs_ref", num_samples=1, seed=1))


def test_sampler_is_deterministic_by_seed(pipe):
    cond, mask = random_condition(4)
    a = pipe(cond, mask, 4, "nocs_self", num_samples=3, seed=7)
    b = pipe(cond, mask, 4, "nocs_self", num_samples=3, seed=7)
    c = pipe(cond, mask, 4, "nocs_self", num_samples=3, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(a, pipe(cond, mask, 4, "nocs_self", num_samples=3, generator=g))
    assert not torch.equal(a[0], a[1])          # K hypotheses differ


def test_dpmsolver_sampler_runs():
    torch.manual_seed(0)
    p = SparpDiffusionPipeline.from_config(get_config("tiny", denoiser=SMALL, cell=S, sampler="dpmsolver++"))
    cond, mask = random_condition(2)
    out = p(cond, mask, 2, num_samples=2, num_inference_steps=4)
    assert out.shape == (2, 3, 3 * S, 2 * S) and torch.isfinite(out).all()


def test_bad_inputs_name_the_argument(pipe):
    cond, mask = random_condition(2)
    with pytest.raises(ValueError, match="cond must have shape"):
        pipe(cond[:, :S], mask, 2)
    with pytest.raises(ValueError, match="num_views must be in 1..6, got 7"):
        pipe(cond, mask, 7)
    with pytest.raises(ValueError, match="domain must be one of"):
        pipe(cond, mask, 2, domain="depth")
    with pytest.raises(ValueError, match="num_samples"):
        pipe(cond, mask, 2, num_samples=0)


# ---------------------------------------------------------------------------------- save / load
def test_save_load_round_trip_is_bit_exact(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "denoiser" / "diffusion_pytorch_model.safetensors").is_file()
    config = json.loads((tmp_path / "m" / "denoiser" / "config.json").read_text())
    assert config["block_out_channels"] == [16, 32] and config["_class_name"] == "SparpDenoiser"
    loaded = SparpDiffusionPipeline.from_pretrained(tmp_path / "m")
    for a, b in zip(pipe.denoiser.state_dict().values(), loaded.denoiser.state_dict().values()):
        assert torch.equal(a, b)
    cond, mask = random_condition(5)
    assert torch.equal(pipe(cond, mask, 5, num_samples=2, seed=3), loaded(cond, mask, 5, num_samples=2, seed=3))


def test_corrupt_safetensors_is_refused(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "denoiser" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="diffusion_pytorch_model.safetensors"):
        SparpDiffusionPipeline.from_pretrained(tmp_path / "m")
    weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelLoadError, match="corrupt"):
        SparpDenoiser.from_pretrained(tmp_path / "m" / "denoiser")


def test_pickle_weights_are_refused_never_unpickled(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    d = tmp_path / "m" / "denoiser"
    (d / "diffusion_pytorch_model.safetensors").unlink()

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))
    torch.save({"x": Boom()}, d / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"diffusion_pytorch_model\.bin"):
        SparpDiffusionPipeline.from_pretrained(tmp_path / "m")
    from sparp_ros.model.unet import load_safetensors_checked
    with pytest.raises(ModelLoadError, match="pickle"):
        load_safetensors_checked(d / "diffusion_pytorch_model.bin")


def test_missing_folder_and_mismatched_weights(pipe, tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        SparpDiffusionPipeline.from_pretrained(tmp_path / "nowhere")
    pipe.save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m" / "denoiser" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["block_out_channels"] = [16, 48]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="do not fit"):
        SparpDiffusionPipeline.from_pretrained(tmp_path / "m")


# ---------------------------------------------------------------------------------- conditioning
def test_reference_attention_is_a_processor_and_carries_the_condition():
    torch.manual_seed(0)
    # no channel concat and a condition-blind global encoder input: only reference attention sees cond
    model = SparpDenoiser(**{**SMALL, "concat_cond": False}).eval()
    procs = model.unet.attn_processors
    ref = [n for n, p in procs.items() if isinstance(p, ReferenceAttnProcessor)]
    assert ref and all(n.endswith("attn1.processor") for n in ref)
    assert not any(isinstance(p, ReferenceAttnProcessor) for n, p in procs.items() if "attn2" in n)
    x = torch.randn(1, 3, 3 * S, 2 * S)
    cond_a, mask = random_condition(3, seed=1)
    cond_b, _ = random_condition(3, seed=2)
    blank = torch.zeros(1, 3, 3 * S, 2 * S)
    with torch.no_grad():
        def run(cond):
            c = model.prepare_condition(cond[None], mask[None], 3, "nocs_ref", cond_image=blank)
            assert c.reference is not None and len(c.reference) == len(ref)
            return model.denoise(x, torch.tensor([500]), c)
        a, b = run(cond_a), run(cond_b)
        assert not torch.allclose(a, b, atol=1e-5)
        assert torch.equal(a, run(cond_a))
    # without reference attention, the same setup cannot see the condition at all
    torch.manual_seed(0)
    blind = SparpDenoiser(**{**SMALL, "concat_cond": False, "reference_attention": False}).eval()
    with torch.no_grad():
        ca = blind.prepare_condition(cond_a[None], mask[None], 3, "nocs_ref", cond_image=blank)
        cb = blind.prepare_condition(cond_b[None], mask[None], 3, "nocs_ref", cond_image=blank)
        assert torch.equal(blind.denoise(x, torch.tensor([500]), ca), blind.denoise(x, torch.tensor([500]), cb))


def test_reference_states_broadcast_over_k_samples():
    torch.manual_seed(0)
    model = SparpDenoiser(**SMALL).eval()
    cond, mask = random_condition(2)
    x = torch.randn(3, 3, 3 * S, 2 * S)
    with torch.no_grad():
        c1 = model.prepare_condition(cond[None], mask[None], 2, "nocs_ref")
        c3 = model.prepare_condition(cond[None].expand(3, -1, -1, -1), mask[None].expand(3, -1, -1, -1), 2,
                                     "nocs_ref")
        torch.testing.assert_close(model.denoise(x, torch.tensor(300), c1),
                                   model.denoise(x, torch.tensor(300), c3), atol=1e-5, rtol=1e-5)


def test_init_from_unet_copies_pretrained_weights(tmp_path):
    from diffusers import UNet2DConditionModel
    torch.manual_seed(1)
    model = SparpDenoiser(**SMALL)
    src = UNet2DConditionModel(**{k: v for k, v in model.unet.config.items() if not k.startswith("_")}
                               | {"in_channels": 3, "num_class_embeds": None})
    src.save_pretrained(tmp_path / "unet")
    left = model.init_from_unet(tmp_path / "unet")
    assert "class_embedding.weight" in left
    torch.testing.assert_close(model.unet.conv_in.weight[:, :3], src.conv_in.weight)
    assert model.unet.conv_in.weight[:, 3:].abs().max() == 0
    torch.testing.assert_close(model.unet.conv_out.weight, src.conv_out.weight)


# ---------------------------------------------------------------------------------- backend
def test_model_backend_predicts_one_nocs_per_view(pipe, tmp_path):
    from sparp_ros.camera import PinholeCamera
    from sparp_ros.model.backend import CellView
    pipe.save_pretrained(tmp_path / "m")
    backend = ModelNocsBackend(tmp_path / "m", num_samples=2)
    rng = np.random.default_rng(0)
    cam = PinholeCamera(S, S, np.array([[10.0, 0, 3.5], [0, 10.0, 3.5], [0, 0, 1]]))
    views = [CellView(rng.integers(0, 256, (S, S, 3), dtype=np.uint8), np.ones((S, S), bool), cam)
             for _ in range(3)]
    preds = backend.predict(views)
    assert len(preds) == 3
    for p in preds:
        assert p.nocs.shape == (S, S, 3) and p.nocs.dtype == np.float32 and p.mask.shape == (S, S)
        assert p.nocs.min() >= 0 and p.nocs.max() <= 1
    assert len(backend.predict_hypotheses(views)) == 2


def test_latent_path_with_a_local_vae(tmp_path):
    """The sd21 code path (VAE latents, v-prediction, DPM-Solver++) on a tiny local VAE (its
    training: test/training/test_train.py)."""
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8),
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=3 * S)
    vae.save_pretrained(tmp_path / "vae")
    sd = get_config("sd21")
    cfg = get_config("sd21", cell=S, vae_path=str(tmp_path / "vae"), num_inference_steps=3,
                     denoiser={**SMALL, "sample_size": (3 * S // 2, 2 * S // 2), "target_channels": 4,
                               "cond_channels": 4, "latent_factor": 2, "use_linear_projection": True})
    assert cfg.latent and cfg.scheduler["prediction_type"] == "v_prediction" and cfg.sampler == "dpmsolver++"
    assert sd.denoiser["block_out_channels"] == (320, 640, 1280, 1280) and sd.cell == 320
    pipe = SparpDiffusionPipeline.from_config(cfg)
    cond, mask = random_condition(2)
    out = pipe(cond, mask, 2, "fixed_rgb", num_samples=2)
    assert out.shape == (2, 3, 3 * S, 2 * S)
    pipe.save_pretrained(tmp_path / "p")
    assert torch.equal(out, SparpDiffusionPipeline.from_pretrained(tmp_path / "p")(cond, mask, 2, "fixed_rgb",
                                                                                    num_samples=2))
    with pytest.raises(ModelLoadError, match="vae_path"):
        SparpDiffusionPipeline.from_config("sd21")


def test_clip_encoder_needs_a_local_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="clip_path"):
        SparpDenoiser(**{**SMALL, "encoder_type": "clip"})
    with pytest.raises(ModelLoadError, match="not found"):
        SparpDenoiser(**{**SMALL, "encoder_type": "clip", "clip_path": str(tmp_path / "no_clip")})


def test_cell_override_resizes_the_denoiser_input():
    """``--cell-size``: the 3×2 tile follows the cell (÷ the VAE factor in latent space)."""
    assert get_config("tiny", cell=64).denoiser["sample_size"] == (192, 128)
    assert get_config("tiny", cell=64).cell == 64
    assert get_config("sd21", cell=256).denoiser["sample_size"] == (96, 64)
    assert get_config("tiny").denoiser["sample_size"] == (96, 64)        # the factory is untouched
    with pytest.raises(ValueError, match="multiple of 64"):
        get_config("sd21", cell=100)
    with pytest.raises(ValueError, match="multiple of 8"):
        get_config("tiny", cell=36)


def test_float16_weights_load_into_the_float32_model(pipe, tmp_path):
    """scripts/half_weights.py halves the file; loading casts back, outputs stay within fp16 rounding."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("half_weights", REPO / "scripts" / "half_weights.py")
    half_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(half_weights)
    pipe.save_pretrained(tmp_path / "full")
    written = half_weights.halve(tmp_path / "full", tmp_path / "half")
    assert [p.name for p in written] == ["diffusion_pytorch_model.safetensors"]
    full_file = tmp_path / "full" / "denoiser" / written[0].name
    assert written[0].stat().st_size < 0.55 * full_file.stat().st_size
    loaded = SparpDiffusionPipeline.from_pretrained(tmp_path / "half")
    assert loaded.dtype == torch.float32
    cond, mask = random_condition(3)
    a = pipe(cond, mask, 3, "nocs_self", seed=1)
    b = loaded(cond, mask, 3, "nocs_self", seed=1)
    assert 0 < float((a - b).abs().max()) < 2e-2
