"""The one optimisation loop of every network (the small ones, the segmenter, the diffusion
model), on accelerate.

What differs between networks is passed in: how a batch's loss is made (``batch_loss(step)``),
the learning rate at each step (``lr_at(step)``), what a validation pass records, what a
checkpoint writes and what else a step does (``after_step``: the diffusion model's EMA and its log
rows). What is the same is here once: device placement and backward through accelerate, gradient
clipping (optional), the rate set before each step, the wall-clock limit (stopping writes a
checkpoint, so ``--resume`` continues), validation in eval mode every ``val_every`` steps (and at
the last one), checkpoints every ``checkpoint_every`` steps and at the last one, a log line per
``log_every`` steps.

Why accelerate for the small CPU networks too: one loop to read and to change, and the same code
runs on a lent GPU (``scripts/gpu_train.sh``). On the CPU, accelerate's prepared optimizer steps
exactly like the plain one: the small networks' seeded runs give the same weights as before
(``test/training/test_loop.py``), and so does the diffusion trainer's (``training/train.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class LoopSpec:
    """How long and how often: ``steps`` in all, stop after ``max_minutes`` (None: never),
    validate every ``val_every`` steps and at the last (``validate_last`` False: only every
    ``val_every``), log every ``log_every`` (0: only at validation), checkpoint every
    ``checkpoint_every`` and at the last (0: only when stopped by the clock)."""

    steps: int
    max_minutes: float | None = None
    val_every: int = 500
    log_every: int = 0
    checkpoint_every: int = 0
    validate_last: bool = True


@dataclass
class LoopState:
    """Where a run is: the step done, the validation history, minutes spent in this call."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    minutes: float = 0.0
    stopped_by_clock: bool = False


def run_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             batch_loss: Callable[[int], torch.Tensor], spec: LoopSpec,
             lr_at: Callable[[int], float] | None = None,
             validate: Callable[[], tuple[dict, str]] | None = None,
             checkpoint: Callable[[LoopState], None] | None = None,
             state: LoopState | None = None, accelerator: Any = None,
             log: Callable[[str], None] = print,
             grad_clip: float | None = None,
             after_step: Callable[[LoopState, torch.Tensor], None] | None = None,
             started: float | None = None) -> LoopState:
    """Optimise ``model`` until ``spec.steps`` (from ``state.step`` when resuming).

    ``batch_loss(step)`` draws the batch of that step and returns its loss (the caller seeds its
    draws by the step, or by a generator it owns); ``lr_at(step)`` sets every group's rate before
    the step (None: leave it, e.g. a torch scheduler stepped inside ``batch_loss``'s caller);
    ``grad_clip``: the gradients' norm is clipped to it before each step (None: not clipped);
    ``after_step(state, loss)`` runs after each optimizer step (``state.step`` already counts it),
    before validation and checkpoint; ``validate()`` runs in eval mode and returns (a record for
    the history, a log line); ``checkpoint(state)`` writes what a resume needs. ``started``: the
    ``time.time()`` the wall-clock limit counts from (default: this call). ``accelerator``: an
    ``accelerate`` Accelerator (made for the CPU or the one GPU when None). The model and
    optimizer are prepared here, unless the caller prepared them with this accelerator already
    (accelerate hands prepared objects back as they are, never wrapped twice); on one device
    accelerate hands back the same module (moved, its forward wrapped for mixed precision), so
    ``batch_loss`` may call the model it closed over. Several processes (DDP) would need the
    prepared model passed in: not a case this project runs."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    state = state or LoopState()
    prepared_model, prepared_opt = accelerator.prepare(model, optimizer)
    t0 = t_last = time.time()
    t_clock = t0 if started is None else started
    prepared_model.train()
    loss = None
    while state.step < spec.steps:
        if spec.max_minutes is not None and time.time() - t_clock > 60.0 * spec.max_minutes:
            state.stopped_by_clock = True
            log(f"stopping at step {state.step}: {spec.max_minutes} minutes reached"
                + (" (--resume continues)" if checkpoint is not None else ""))
            if checkpoint is not None:
                checkpoint(state)
            break
        if lr_at is not None:
            for group in prepared_opt.param_groups:
                group["lr"] = lr_at(state.step)
        loss = batch_loss(state.step)
        prepared_opt.zero_grad()
        accelerator.backward(loss)
        if grad_clip and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(prepared_model.parameters(), grad_clip)
        prepared_opt.step()
        state.step += 1
        if after_step is not None:
            after_step(state, loss)
        if spec.log_every and state.step % spec.log_every == 0:
            log(f"step {state.step}/{spec.steps} loss {loss.item():.4f} "
                f"({(time.time() - t_last) / spec.log_every:.2f} s/step)")
            t_last = time.time()
        last = state.step == spec.steps
        if validate is not None and (state.step % spec.val_every == 0 or last and spec.validate_last):
            prepared_model.eval()
            record, message = validate()
            prepared_model.train()
            state.history.append({"step": state.step, "loss": loss.item(), **record})
            log(f"step {state.step}/{spec.steps} ({time.time() - t0:.0f} s): "
                f"loss {loss.item():.4f}, {message}")
        if checkpoint is not None and spec.checkpoint_every and (
                state.step % spec.checkpoint_every == 0 or last):
            checkpoint(state)
    prepared_model.eval()
    state.minutes = round((time.time() - t0) / 60.0, 2)
    return state
