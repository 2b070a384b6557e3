import sys, numpy as np
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[2]))
from sparp_ros.model.diffusion import SparpDiffusionPipeline
from sparp_ros.training.dataset import SparpDataset
from sparp_ros.training.validate import view_rotation_errors
pipe = SparpDiffusionPipeline.from_pretrained(sys.argv[1])
for steps in [int(s) for s in sys.argv[3].split(",")]:
    pipe.num_inference_steps = steps
    e = np.array(view_rotation_errors(pipe, SparpDataset(sys.argv[2]), "nocs_self", items=40))
    print(sys.argv[1], sys.argv[2], steps, f"median {np.median(e):.1f} acc15 {np.mean(e<15):.2f} acc30 {np.mean(e<30):.2f} n {len(e)}", flush=True)
