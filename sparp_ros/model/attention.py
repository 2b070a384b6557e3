"""Reference attention (local conditioning), as a named diffusers attention processor.

The UNet runs twice. In the **write** pass it sees the noise-free condition tiles (timestep 0) and
every self-attention layer stores its input hidden states in a shared :class:`ReferenceBank`. In
the **read** pass (the noisy sample) every self-attention layer appends the stored states of the
same layer to its keys and values, so each query of the noisy image can attend to the condition's
features at the same depth (Zero123++ / SpaRP). Installed with ``unet.set_attn_processor`` (STYLE 5):
nothing patches ``forward``.

The bank holds the mode (``off`` / ``write`` / ``read``) and the states; the denoiser switches the
mode around its two passes. Stored states with batch 1 broadcast to any read batch (K samples of
one condition share one write pass).
"""
from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

MODES = ("off", "write", "read")


class ReferenceWriteDone(Exception):
    """Raised by the last reference layer of a write pass when ``bank.stop_early``: the rest of
    the UNet (its high-resolution decoder) does not influence the stored states, so it is skipped.
    The autograd graph of the stored states is complete at that point."""


class ReferenceBank:
    """Shared state of all :class:`ReferenceAttnProcessor` of one UNet."""

    def __init__(self) -> None:
        self.mode = "off"
        self.states: dict[str, torch.Tensor] = {}
        self.num_layers = 0          # reference layers installed
        self.stop_early = True       # end the write pass after the last reference layer

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def snapshot(self) -> dict[str, torch.Tensor]:
        return dict(self.states)

    def load(self, states: dict[str, torch.Tensor]) -> None:
        self.states = dict(states)

    def clear(self) -> None:
        self.states = {}


class ReferenceAttnProcessor:
    """Self-attention whose keys/values also include the condition's stored hidden states."""

    def __init__(self, name: str, bank: ReferenceBank) -> None:
        self.name = name
        self.bank = bank
        self.inner = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        mode = self.bank.mode
        if mode == "write":
            self.bank.states[self.name] = context
            if self.bank.stop_early and len(self.bank.states) == self.bank.num_layers:
                raise ReferenceWriteDone
        elif mode == "read":
            ref = self.bank.states.get(self.name)
            if ref is None:
                raise RuntimeError(f"reference attention layer {self.name!r} has no stored condition; "
                                   "run the write pass first")
            if ref.shape[0] != context.shape[0]:
                if ref.shape[0] != 1:
                    raise RuntimeError(f"reference batch {ref.shape[0]} does not match {context.shape[0]}")
                ref = ref.expand(context.shape[0], -1, -1)
            context = torch.cat([context, ref.to(context.dtype)], dim=1)
        return self.inner(attn, hidden_states, encoder_hidden_states=context,
                          attention_mask=attention_mask, temb=temb)


def install_reference_attention(unet, bank: ReferenceBank) -> list[str]:
    """Put a :class:`ReferenceAttnProcessor` on every self-attention layer (``attn1``) of ``unet``.

    Cross-attention layers keep the standard processor. Returns the names of the reference layers.
    """
    procs = {}
    ref_names = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            procs[name] = ReferenceAttnProcessor(name, bank)
            ref_names.append(name)
        else:
            procs[name] = AttnProcessor2_0()
    unet.set_attn_processor(procs)
    bank.num_layers = len(ref_names)
    return ref_names
