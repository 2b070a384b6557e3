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

The loops: ``loop.run_loop`` is the one optimisation loop on accelerate (a batch loss per step,
the rate per step, validation and checkpoints as callables, a wall-clock limit that checkpoints so
``--resume`` continues). The small networks (``small_nets.train_loop``: AdamW with a one-cycle
rate, batches from one seeded generator) and the segmenter (``segmenter.train``: warm-up + cosine,
batches seeded by (seed, step), safetensors checkpoints) run on it; seeded runs of both give the
same weights bit for bit as the loops they had. The diffusion model's ``train.train`` runs on it
too: EMA, the per-domain loss window, the epoch DataLoader over shards and the time-based rate
are its callbacks; gradient clipping (``grad_clip``) and the clock's start (``started``) are
``run_loop`` options; seeded CPU runs (plain, ``--cache-data``, resumes, the latent path) gave
every saved tensor bit for bit as its own loop did.
"""
