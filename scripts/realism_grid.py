"""The README's picture grid of the data engine's realism (``docs/data_realism.png``).

    .venv/bin/python scripts/realism_grid.py [--out docs/data_realism.png] [--samples 6] [--seed 3]

Each row is one training sample of the realism data engine (``DatasetConfig.realism``,
``render/object_realism.py``) on ``../shared/data/train_objects``: its first views as the camera
saw them (crop box in green), then the first view's cell as the model gets it (background
greyed by the mask, as in training) and its NOCS target (``nocs_self``). One row without
realism on top for comparison.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TRAIN = Path(os.environ.get("SPARP_SHARED", REPO.parent / "shared")) / "data" / "train_objects"
H = 150          # row height in pixels


def _fit(img: np.ndarray, h: int = H) -> np.ndarray:
    w = max(1, int(round(img.shape[1] * h / img.shape[0])))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_NEAREST)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 7 * len(text) + 6), 18), (0, 0, 0), -1)
    cv2.putText(out, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "docs" / "data_realism.png"))
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--cell-size", type=int, default=64)
    p.add_argument("--views", type=int, default=3, help="full views shown per row")
    args = p.parse_args()
    from sparp_ros.conventions import decode_nocs_png
    from sparp_ros.render.capture_renderer import default_renderer
    from sparp_ros.render.object_realism import SENSOR_MM, ObjectRealism
    from sparp_ros.training.dataset import (DatasetConfig, find_objects, make_sample,
                                            render_sample_realism, sample_rng)

    objects = find_objects([TRAIN])
    renderer = default_renderer()
    S = args.cell_size
    rows = []

    def cells(sample: dict) -> list[np.ndarray]:
        img = sample["images"][0] * sample["masks"][0][..., None] + 127 * (1 - sample["masks"][0][..., None])
        nocs, m = decode_nocs_png(sample["nocs_self"][0])
        nocs_img = (np.clip(nocs, 0, 1) * 255 * m[..., None]).astype(np.uint8)
        return [_label(_fit(img.astype(np.uint8)), "cell"), _label(_fit(nocs_img), "NOCS")]

    plain = DatasetConfig(objects=objects, cell_size=S, views=(args.views, args.views),
                          fixed_views=False, seed=args.seed)
    s = make_sample(plain, 5)
    full = [_label(_fit(s["images"][k]), "realism off: cell") for k in range(args.views)]
    rows.append(full + cells(s))
    cfg = DatasetConfig(objects=objects, cell_size=S, views=(args.views, args.views),
                        fixed_views=False, seed=args.seed, realism=ObjectRealism())
    index = 0
    while len(rows) < args.samples + 1:
        index += 17
        views: list = []
        try:
            s = render_sample_realism(objects[index % len(objects)], cfg,
                                      sample_rng(cfg, 0, index), renderer, full_views=views)
        except Exception as exc:                     # noqa: BLE001 (a figure: skip and go on)
            print(f"sample {index}: {exc}")
            continue
        row = []
        for k, (image, mask, box) in enumerate(views):
            img = image.copy()
            x0, y0 = int(round(box.x0)), int(round(box.y0))
            side = int(round(box.side))
            cv2.rectangle(img, (x0, y0), (x0 + side, y0 + side), (0, 255, 0), max(1, img.shape[0] // 150))
            f_mm = s["render_K"][k, 0, 0] / max(s["render_size"]) * SENSOR_MM
            text = (f"{f_mm:.0f}mm el {np.degrees(s['elevation'][k]):.0f} "
                    f"fill {s['fill'][k]:.2f}" + (" cut" if s["truncation"][k] > 0 else ""))
            row.append(_label(_fit(img), text))
        rows.append(row + cells(s))
    width = max(sum(im.shape[1] for im in r) + 4 * len(r) for r in rows)
    canvas = np.full((len(rows) * (H + 4), width, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        x = 0
        for im in r:
            canvas[i * (H + 4):i * (H + 4) + H, x:x + im.shape[1]] = im
            x += im.shape[1] + 4
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {len(rows)} rows, {canvas.shape[1]}x{canvas.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
