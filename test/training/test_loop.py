"""The one training loop (accelerate): it learns, sets the rate per step, validates on schedule,
stops on the clock with a checkpoint, and resumes where it stopped to the same weights."""
from __future__ import annotations

import torch

from sparp_ros.training.loop import LoopSpec, LoopState, run_loop


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 1)
    w_true = torch.tensor([[1.5, -2.0, 0.5]])

    def batch_loss(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1000 + step)            # seeded by the step: resumable
        x = torch.randn(32, 3, generator=g)
        return torch.nn.functional.mse_loss(net(x), x @ w_true.T)
    return net, torch.optim.SGD(net.parameters(), lr=0.1), batch_loss, w_true


def test_it_learns_sets_the_rate_and_validates_on_schedule():
    net, opt, batch_loss, w_true = _problem()
    rates, lines = [], []
    state = run_loop(net, opt, batch_loss, LoopSpec(steps=50, val_every=20),
                     lr_at=lambda s: rates.append(0.1 * (1 - s / 50)) or rates[-1],
                     validate=lambda: ({"w_error": float((net.weight - w_true).abs().max())}, "ok"),
                     log=lines.append)
    assert state.step == 50 and not state.stopped_by_clock
    assert [h["step"] for h in state.history] == [20, 40, 50]
    assert state.history[-1]["w_error"] < 0.05 < state.history[0]["loss"] + 1   # it learned
    assert len(rates) == 50 and rates[0] == 0.1 and abs(rates[-1] - 0.002) < 1e-12
    assert not net.training                                    # left in eval mode


def test_stopping_on_the_clock_checkpoints_and_a_resume_ends_where_one_run_ends():
    net, opt, batch_loss, _ = _problem()
    whole = run_loop(net, opt, batch_loss, LoopSpec(steps=30), log=lambda _: None)
    w_whole = net.weight.detach().clone()

    net, opt, batch_loss, _ = _problem()
    saved = []
    stopped = run_loop(net, opt, batch_loss, LoopSpec(steps=30, max_minutes=0.0),
                       checkpoint=lambda s: saved.append(s.step), log=lambda _: None)
    assert stopped.stopped_by_clock and stopped.step == 0 and saved == [0]
    first = run_loop(net, opt, batch_loss, LoopSpec(steps=12), log=lambda _: None)
    resumed = run_loop(net, opt, batch_loss, LoopSpec(steps=30),
                       state=LoopState(step=first.step), log=lambda _: None)
    assert whole.step == resumed.step == 30
    assert torch.equal(net.weight.detach(), w_whole)


def test_the_diffusion_trainers_options_clip_hook_schedule_and_clock_start():
    """What ``training.train`` passes: the gradient norm clipped to ``grad_clip`` (one SGD step
    of rate 1 moves the weights by exactly that norm), ``after_step`` after each step with the
    step counted, validation only every ``val_every`` when ``validate_last`` is off, and the
    clock counted from ``started``."""
    import time

    import pytest
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    x = torch.full((8, 3), 100.0)

    def batch_loss(step: int) -> torch.Tensor:
        return (net(x) - 1e4).square().mean()
    raw = torch.autograd.grad(batch_loss(0), list(net.parameters()))
    assert torch.cat([g.flatten() for g in raw]).norm() > 1e3           # far above the clip
    before = torch.cat([p.detach().flatten() for p in net.parameters()])
    seen = []
    state = run_loop(net, torch.optim.SGD(net.parameters(), lr=1.0), batch_loss,
                     LoopSpec(steps=1), grad_clip=0.5, log=lambda _: None,
                     after_step=lambda s, loss: seen.append((s.step, float(loss))))
    moved = torch.cat([p.detach().flatten() for p in net.parameters()]) - before
    assert state.step == 1 and float(moved.norm()) == pytest.approx(0.5, rel=1e-4)
    assert len(seen) == 1 and seen[0][0] == 1 and seen[0][1] > 1e6

    net, opt, batch_loss, _ = _problem()
    steps = []
    state = run_loop(net, opt, batch_loss, LoopSpec(steps=7, val_every=3, validate_last=False),
                     validate=lambda: ({}, ""), log=lambda _: None,
                     after_step=lambda s, loss: steps.append(s.step))
    assert steps == list(range(1, 8)) and [h["step"] for h in state.history] == [3, 6]

    saved = []
    late = run_loop(net, opt, batch_loss, LoopSpec(steps=30, max_minutes=1.0),
                    checkpoint=lambda s: saved.append(s.step), state=LoopState(step=7),
                    started=time.time() - 120.0, log=lambda _: None)
    assert late.stopped_by_clock and late.step == 7 and saved == [7]
