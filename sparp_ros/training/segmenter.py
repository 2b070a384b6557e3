"""Train the learned foreground segmenter (``sparp_ros.segment_learned``) on realistic tabletop
renders of the training meshes.

Two steps, one command each (both seeded, both resumable):

    python -m sparp_ros.training.segmenter render --meshes ../shared/data/train_objects \\
        --out runs/segmenter_data --images 8000
    python -m sparp_ros.training.segmenter train --data runs/segmenter_data \\
        --out runs/segmenter --minutes 30 [--resume]

(the shipped weights' exact commands and times: ``model/weights/segmenter/MODEL_CARD.md``)

``render``: tabletop scenes (``render.scene.render_tabletop`` with ``SceneRealism()``: shadows,
three light types, backgrounds beyond the table, photo-like table tops, distractors, camera
effects) of 1–4 training meshes, 3 views each, rendered at twice the network's size and reduced
(area average, as inference reduces a photograph). The target is every *whole* object in view:
the scene's objects and the distractors that do not touch the image border (a cut-off object at
the border is background, as the chair at the edge of a photograph is). Shards of 500 images per
image shape (``shape_<h>x<w>_<k>.npz``: ``images`` N×H×W×3 uint8, ``masks`` N×H×W uint8
0–255);
a shard already written is skipped, so a stopped run continues where it was.

``train``: accelerate (CPU or one GPU), AdamW with warm-up + cosine rate, BCE + soft Dice, batches
from one shape bucket each, drawn from a generator seeded by (seed, step) — so a resumed run
draws the batches the uninterrupted one would have. Augmentation: flips, scale/shift, colour
jitter, grey (``--grey-prob``), hue rotation (``--hue-prob``). ``--init`` starts from a weights
folder (fine-tuning). A checkpoint every ``--checkpoint-every`` steps (``RUN/checkpoint/``: model
and AdamW state as safetensors, ``state.json``); ``--resume`` continues from it. The weights folder
(``RUN/final/``: ``config.json`` + ``model.safetensors``) is what ``segment_learned`` loads.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

SHAPES = ((128, 160), (160, 128), (160, 160), (96, 160), (160, 96))   # (h, w) network inputs
RENDER_SCALE = 2
SHARD_IMAGES = 500
VIEWS_PER_SCENE = 3
OBJECTS_PER_SCENE = (1, 4)
DISTRACTOR_POOL = 6
BORDER_PX = 2


# -- data ----------------------------------------------------------------------------------------
def whole_object_target(ids: np.ndarray, distractor_ids: np.ndarray | None) -> np.ndarray:
    """The segmenter's target (HxW bool): the scene's objects and the distractors whose visible
    part does not touch the image border."""
    target = ids > 0
    if distractor_ids is not None:
        for k in np.unique(distractor_ids):
            if k == 0:
                continue
            m = distractor_ids == k
            b = BORDER_PX
            if not (m[:b].any() or m[-b:].any() or m[:, :b].any() or m[:, -b:].any()):
                target |= m
    return target


def render_dataset(meshes: list[Path], out: Path, images: int, seed: int = 0,
                   log=print) -> int:
    """Render ``images`` training images (module docstring) into ``out``; returns how many exist."""
    from ..render.scene import SceneRenderError, render_tabletop
    from ..render.scene_realism import SceneRealism
    out.mkdir(parents=True, exist_ok=True)
    realism = SceneRealism()
    per_shape = int(math.ceil(images / len(SHAPES)))
    shard_images = min(SHARD_IMAGES, per_shape)
    shards = int(math.ceil(per_shape / shard_images))
    t0 = time.time()
    done = 0
    for k in range(shards):
        for s, (h, w) in enumerate(SHAPES):
            path = out / f"shape_{h}x{w}_{k:03d}.npz"
            if path.exists():
                done += shard_images
                continue
            rng = np.random.default_rng([seed, k, s])
            imgs, masks = [], []
            scene = 0
            while len(imgs) < shard_images:
                scene += 1
                n = min(int(rng.integers(OBJECTS_PER_SCENE[0], OBJECTS_PER_SCENE[1] + 1)),
                        len(meshes))
                pick = rng.choice(len(meshes), min(n + DISTRACTOR_POOL, len(meshes)),
                                  replace=False)
                try:
                    sc = render_tabletop([meshes[i] for i in pick[:n]], views=VIEWS_PER_SCENE,
                                         seed=int(rng.integers(2**31)), width=w * RENDER_SCALE,
                                         height=h * RENDER_SCALE, realism=realism,
                                         distractors=[meshes[i] for i in pick[n:]])
                except SceneRenderError:
                    continue
                for f, ids, dis in zip(sc.capture.frames, sc.ids, sc.distractor_ids):
                    target = whole_object_target(ids, dis).astype(np.float32)
                    imgs.append(cv2.resize(f.image, (w, h), interpolation=cv2.INTER_AREA))
                    masks.append(np.rint(255 * cv2.resize(target, (w, h),
                                                          interpolation=cv2.INTER_AREA)
                                         ).astype(np.uint8))
            np.savez(path, images=np.stack(imgs[:shard_images]),
                     masks=np.stack(masks[:shard_images]))
            done += shard_images
            log(f"{path.name}: {shard_images} images ({done} in all, "
                f"{time.time() - t0:.0f} s this run)")
    return done


def load_dataset(folders: list[Path]) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """{(h, w): (images, masks)} from every shard in ``folders``."""
    buckets: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for folder in folders:
        files = sorted(Path(folder).glob("shape_*.npz"))
        if not files:
            raise FileNotFoundError(f"no shape_*.npz shards in {folder}")
        for f in files:
            with np.load(f) as z:
                buckets.setdefault(z["images"].shape[1:3], []).append((z["images"], z["masks"]))
    return {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
            for k, v in buckets.items()}


# -- augmentation --------------------------------------------------------------------------------
def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            hue_prob: float = 0.0, grey_prob: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Flip, scale/shift (objects may leave the frame: then they stay foreground where seen),
    colour jitter, a random hue rotation (``hue_prob``), grey (``grey_prob``). uint8 in, float32
    [0, 1] out."""
    h, w = mask.shape
    if hue_prob > 0 and rng.random() < hue_prob:
        hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(rng.integers(180))) % 180
                       ).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.6:
        s = float(np.exp(rng.uniform(-0.35, 0.35)))
        tx, ty = rng.uniform(-0.12, 0.12) * w, rng.uniform(-0.12, 0.12) * h
        M = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]])
        img = cv2.warpAffine(np.ascontiguousarray(img), M, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(np.ascontiguousarray(mask), M, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    x = img.astype(np.float32) / 255.0
    x = (x - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)       # contrast, bright
    x = x * rng.uniform(0.85, 1.15, size=3)                                       # colour cast
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * (0.0 if rng.random() < grey_prob else rng.uniform(0.6, 1.4))
    return np.clip(x, 0, 1), mask.astype(np.float32) / 255.0


# -- training ------------------------------------------------------------------------------------
def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _save_checkpoint(folder: Path, net, opt, step: int, history: list[dict], args) -> None:
    import torch
    from safetensors.torch import save_file
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
              str(tmp / "model.safetensors"))
    flat = {}
    names = {id(p): n for n, p in net.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                flat[f"{names[id(p)]}::{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(flat, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "history": history,
                                                "args": vars(args)}, indent=1))
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    tmp.rename(folder)


def _load_checkpoint(folder: Path, net, opt) -> tuple[int, list[dict]]:
    import torch
    from ..model.unet import load_safetensors_checked
    net.load_state_dict(load_safetensors_checked(folder / "model.safetensors"))
    flat = load_safetensors_checked(folder / "optimizer.safetensors")
    params = dict(net.named_parameters())
    for key, value in flat.items():
        name, field = key.split("::")
        opt.state[params[name]][field] = value if field != "step" else value.to(torch.float32)
    state = json.loads((folder / "state.json").read_text())
    return int(state["step"]), list(state["history"])


def train(args: argparse.Namespace, log=print) -> Path:
    """Train (or resume) a run in ``args.out``; returns the final weights folder."""
    import torch
    from accelerate import Accelerator
    from ..model.foreground import ForegroundNet
    from .loop import LoopSpec, LoopState, run_loop
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Path(args.out)
    ckpt = run / "checkpoint"
    if ckpt.exists() and not args.resume:
        raise FileExistsError(f"{run} already holds a run: pass --resume or choose another --out")
    data = load_dataset([Path(d) for d in args.data])
    val = load_dataset([Path(d) for d in args.val_data]) if args.val_data else None
    shapes = sorted(data)
    sizes = np.array([len(data[s][0]) for s in shapes], float)
    log(f"data: {int(sizes.sum())} images in {len(shapes)} shapes {shapes}")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    net = ForegroundNet(width=args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    step, history = 0, []
    if args.init and not (args.resume and ckpt.exists()):
        net.load_state_dict(ForegroundNet.from_pretrained(args.init).state_dict())
        log(f"starting from the weights in {args.init}")
    if args.resume and ckpt.exists():
        step, history = _load_checkpoint(ckpt, net, opt)
        log(f"resumed at step {step}")
    log(f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters, device "
        f"{accelerator.device}, {args.steps} steps of {args.batch_size}")
    t0 = time.time()

    def batch_loss(k: int):
        """The batch of step ``k``, drawn from a generator seeded by (seed, k): resumable."""
        rng = np.random.default_rng([args.seed, k])
        shape = shapes[int(rng.choice(len(shapes), p=sizes / sizes.sum()))]
        imgs, masks = data[shape]
        idx = rng.choice(len(imgs), args.batch_size, replace=len(imgs) < args.batch_size)
        pairs = [augment(imgs[i], masks[i], rng, args.hue_prob, args.grey_prob) for i in idx]
        x = net.to_input(np.stack([p[0] for p in pairs])).to(accelerator.device)
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None].to(accelerator.device)
        return segmentation_loss(net(x), y)

    def validate() -> tuple[dict, str]:
        record = {"minutes": round((time.time() - t0) / 60, 2)}
        if val is not None:
            record["val_iou"] = round(validation_iou(net, val), 4)
        return record, f"checkpoint {record}"

    def checkpoint(state: LoopState) -> None:
        _save_checkpoint(ckpt, net, opt, state.step, state.history, args)

    state = run_loop(net, opt, batch_loss, LoopSpec(
        steps=args.steps, max_minutes=args.minutes, val_every=args.checkpoint_every,
        log_every=args.log_every, checkpoint_every=args.checkpoint_every),
        lr_at=lambda k: _lr(k, args.steps, args.lr, args.warmup), validate=validate,
        checkpoint=checkpoint, state=LoopState(step=step, history=history),
        accelerator=accelerator, log=log)
    step, history, raw = state.step, state.history, net
    final = run / "final"
    raw.eval()
    raw.save_pretrained(final)
    (run / "history.json").write_text(json.dumps(history, indent=1))
    log(f"wrote {final} after {step} steps, {(time.time() - t0) / 60:.1f} min this run")
    return final


def segmentation_loss(logits, target):
    """BCE + soft Dice (per image), both on the logits."""
    import torch.nn.functional as F
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = logits.sigmoid()
    inter = (p * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return bce + dice.mean()


def validation_iou(net, val: dict, limit: int = 200) -> float:
    """Median IoU of the thresholded prediction against the (binarised) target."""
    import torch
    ious = []
    with torch.no_grad():
        for shape, (imgs, masks) in val.items():
            for i in range(0, min(len(imgs), limit), 50):
                x = net.to_input(imgs[i:i + 50].astype(np.float32) / 255.0)
                p = net(x).sigmoid()[:, 0].numpy() > 0.5
                t = masks[i:i + 50] > 127
                inter = (p & t).sum(axis=(1, 2))
                union = (p | t).sum(axis=(1, 2))
                ious += list(inter[union > 0] / union[union > 0])
    return float(np.median(ious)) if ious else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sparp_ros.training.segmenter",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render the training images")
    r.add_argument("--meshes", required=True, help="folder of training meshes (never test meshes)")
    r.add_argument("--out", required=True)
    r.add_argument("--images", type=int, default=8000)
    r.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train", help="train the network")
    t.add_argument("--data", nargs="+", required=True)
    t.add_argument("--val-data", nargs="*")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=24)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--warmup", type=int, default=100)
    t.add_argument("--width", type=int, default=16, help="channels of the first stage")
    t.add_argument("--minutes", type=float, help="stop after this many minutes")
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--log-every", type=int, default=25)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared 2-core machine)")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--init", help="weights folder to start from (fine-tuning)")
    t.add_argument("--hue-prob", type=float, default=0.0,
                   help="share of images whose hue is rotated at random")
    t.add_argument("--grey-prob", type=float, default=0.1, help="share of images made grey")
    args = p.parse_args(argv)
    try:
        if args.command == "render":
            meshes = sorted(Path(args.meshes).glob("*.glb"))
            if not meshes:
                raise FileNotFoundError(f"no .glb meshes in {args.meshes}")
            render_dataset(meshes, Path(args.out), args.images, args.seed)
        else:
            if min(args.steps, args.batch_size, args.checkpoint_every, args.log_every) < 1:
                p.error("--steps, --batch-size, --checkpoint-every, --log-every must be positive")
            train(args)
    except (FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
