"""Experiment: a pair-azimuth network's error on new samples of its training objects against
samples of unseen objects — does it generalise, or does it know the training objects (e.g. by
their colours)? ``SHARDS=3 python .../exp_pair_gap.py PAIR_DIR DATA...`` (the first SHARDS
shards of each dataset folder, every ordered pair of a sample's views, mirror-averaged as the
pipeline asks). New views of the training objects: a dataset of them with a seed no training
used (``sparp-ros dataset --meshes ../shared/data/train_objects --out runs/data64_trainval
--cell-size 64 --samples-per-object 3 --seed 6 --no-fixed-views``); unseen objects:
``runs/data_val64``."""
import glob
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from sparp_ros.model.pair_azimuth import PairAzimuthEstimator  # noqa: E402
from sparp_ros.training.pair_azimuth import load_pair_samples, pair_errors  # noqa: E402

torch.set_num_threads(int(os.environ.get("THREADS", 1)))
n_shards = int(os.environ.get("SHARDS", 3))
estimator = PairAzimuthEstimator.from_folder(sys.argv[1])
for folder in sys.argv[2:]:
    with tempfile.TemporaryDirectory() as subset:         # the first shards only
        for shard in sorted(glob.glob(str(Path(folder) / "shard_*.npz")))[:n_shards]:
            os.symlink(os.path.abspath(shard), Path(subset) / Path(shard).name)
        x, pairs, azimuths, _ = load_pair_samples([subset])
    e = pair_errors(estimator, x, pairs, azimuths, mirror=True)
    print(f"{sys.argv[1]} on {folder}: {len(pairs)} ordered pairs, median |azimuth error| {np.median(e):.1f}°, "
          f"within 30° {np.mean(e < 30):.2f}, flipped (>150°) {np.mean(e > 150):.2f}")
