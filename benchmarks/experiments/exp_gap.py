import sys, numpy as np
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2]))
from sparp_ros.model.diffusion import SparpDiffusionPipeline
from sparp_ros.training.dataset import SparpDataset
from sparp_ros.training.validate import view_rotation_errors
w, dom = sys.argv[1], sys.argv[2]
pipe = SparpDiffusionPipeline.from_pretrained(w)
for data in sys.argv[3:]:
    for steps in (1,):
        pipe.num_inference_steps = steps
        e = np.array(view_rotation_errors(pipe, SparpDataset(data), dom, items=100))
        print(w, dom, data, steps, f"median {np.median(e):.1f} acc15 {np.mean(e<15):.2f} acc30 {np.mean(e<30):.2f} n {len(e)}", flush=True)
