"""Everything that makes the models and nothing that runs them: the data engine (``dataset``:
``sparp-ros dataset``), the diffusion model's training loop (``train``: ``sparp-ros train``, on
accelerate) and its pose validation hook (``validate``), and the small networks' training
(``small_nets``, ``augment``, ``view_angles``: ``sparp-ros train-angles``, ``pair_azimuth``:
``sparp-ros train-pair-azimuth``), and the learned foreground segmenter's data and training
(``segmenter``: ``python -m sparp_ros.training.segmenter render|train``).

Why a package of its own: inference (``sparp_ros.pipeline``, the node) imports ``sparp_ros.model``
only, which is small and has no training dependencies (no argparse, no data engine, no
accelerate); training calls the runtime (network classes, weights folders, ``predict``), never the
other way (``test/test_layers.py`` checks both).

Two training loops, on purpose for now: ``train.train`` (accelerate: devices, mixed precision, EMA,
checkpoints every N steps and ``--resume``, a warm-up then constant or cosine rate, batches from a
DataLoader over shards) and ``small_nets.train_loop`` (plain torch on the CPU: AdamW with a
one-cycle rate, batches drawn in memory from one seeded generator so a run repeats bit for bit,
no checkpoints, the weights saved once at the end). One loop for both would be an accelerate loop
taking (a) a ``batch_loss(generator) -> loss`` callable instead of its DataLoader step, (b) the
rate schedule as a callable of (step, fraction done), (c) EMA, checkpointing and resume as
options the small networks leave off, and (d) a validation hook that gets the model to judge
(the EMA pipeline, or the small network in eval mode). It was not done here because it changes
the small networks' optimisation (accelerate's wrapped optimizer and scheduler, device placement)
and so their trained weights, which this move was to keep as they were. The segmenter's loop
(``segmenter.train``, new, with no trained weights to keep) is on accelerate: ``prepare`` and
``backward`` were all it took, with checkpoints (safetensors) and ``--resume`` of its own and its
batches drawn from a generator seeded by (seed, step), the pattern the one loop would take.
"""
