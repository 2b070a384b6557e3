"""Time the ``sd21`` configuration (SD-2.1-sized UNet, 320 px cells, latent space) at 6 views.

Random weights: this measures cost, not accuracy (issue 3 asks for seconds per denoising step and
for the whole pose path on a GPU). The VAE is an SD-architecture ``AutoencoderKL`` built in process
with random weights, so nothing is downloaded. On a CPU use ``--cell`` to shrink the tiles for a
smoke run; the numbers that matter come from a GPU.

    python benchmarks/time_sd21.py --device cuda --dtype fp16 --out sd21_timing.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sparp_ros.camera import PinholeCamera  # noqa: E402
from sparp_ros.geometry.pnp import solve_pnp_nocs  # noqa: E402
from sparp_ros.model.config import get_config  # noqa: E402
from sparp_ros.model.diffusion import SparpDiffusionPipeline, split_nocs_tiles  # noqa: E402

SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
              block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
"""The Stable Diffusion 2.1 VAE's architecture (its published config.json)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp16", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--cell", type=int, default=None, help="cell size (default the config's 320)")
    p.add_argument("--views", type=int, default=6)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default the config's)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)

    from diffusers import AutoencoderKL
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    if device.type == "cpu" and dtype == torch.float16:
        dtype, args.dtype = torch.float32, "fp32"  # half convolutions are not for CPUs
    torch.manual_seed(0)
    cfg = get_config("sd21", **({"cell": args.cell} if args.cell else {}))
    pipe = SparpDiffusionPipeline.from_config(cfg, vae=AutoencoderKL(**SD_VAE).eval())
    pipe.denoiser.to(device, dtype).eval()
    pipe.vae.to(device, dtype)
    steps = args.steps or cfg.num_inference_steps
    S, V = cfg.cell, args.views
    rng = np.random.default_rng(0)
    cond = torch.from_numpy(rng.uniform(-1, 1, (3, 3 * S, 2 * S)).astype(np.float32))
    mask = torch.ones(1, 3 * S, 2 * S)
    params = sum(p.numel() for p in pipe.denoiser.parameters())
    print(f"sd21: {params / 1e6:.0f} M denoiser parameters, cells {S} px, {V} views, {steps} steps, "
          f"{args.dtype} on {device}", flush=True)

    # one denoising step, alone (the condition prepared once, as the sampler does)
    with torch.inference_mode():
        image = cond[None].to(device, dtype)
        latent = pipe._encode(image)
        condition = pipe.denoiser.prepare_condition(latent, mask[None].to(device, dtype), V, "nocs_ref",
                                                    cond_image=image)
        x = torch.randn(1, 4, *latent.shape[-2:], device=device, dtype=dtype)
        t = torch.tensor(500, device=device)
        step = lambda: pipe.denoiser.denoise(x, t, condition)  # noqa: E731
        _timed(step, device, 2)                                  # warm-up (kernels, allocator)
        step_s = _timed(step, device, args.repeats)
        encode_s = _timed(lambda: pipe._encode(image), device, args.repeats)
        decode_s = _timed(lambda: pipe._decode(x), device, args.repeats)

    # the whole pose path: sampling (encode, condition, steps, decode) + PnP per view on the NOCS
    camera = PinholeCamera(S, S, np.array([[S * 1.2, 0, S / 2], [0, S * 1.2, S / 2], [0, 0, 1.0]]))

    def pose_path() -> None:
        out = pipe(cond, mask, V, "nocs_ref", num_inference_steps=steps, seed=0)
        for nocs, valid in split_nocs_tiles(out[0], V):
            solve_pnp_nocs(nocs, valid, camera)

    _timed(pose_path, device, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    path_s = _timed(pose_path, device, max(2, args.repeats // 2))
    result = {
        "config": "sd21", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype, "cell": S, "views": V, "steps": steps,
        "sampler": cfg.sampler, "denoiser_params_M": round(params / 1e6, 1),
        "denoise_step_s": {"median": float(np.median(step_s)), "all": step_s},
        "vae_encode_s": float(np.median(encode_s)), "vae_decode_s": float(np.median(decode_s)),
        "pose_path_s": {"median": float(np.median(path_s)), "all": path_s},
        "peak_gpu_mib": (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
