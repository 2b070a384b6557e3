import sys, json
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]; sys.path.insert(0, str(REPO))
import torch; torch.set_num_threads(1)
from sparp_ros.model.diffusion import SparpDiffusionPipeline
from sparp_ros.training.validate import pose_validator
pipe = SparpDiffusionPipeline.from_pretrained(sys.argv[1])
if len(sys.argv) > 2: pipe.num_inference_steps = int(sys.argv[2])
print(sys.argv[1:], json.dumps(pose_validator(pipe, "runs/data_val")))
