"""Time the RGB-D pipeline with the registration of another git revision beside the working
tree's, capture by capture in one process, so that the machine's drift cancels.

    python benchmarks/interleaved_time.py benchmarks/out/eval25n/captures [--base HEAD~1] [--rounds 2]

Each capture is reconstructed as ``sparp-ros eval --backend model`` does (RGB-D, no TF), once with
``sparp_ros/geometry/registration.py`` as it is in ``--base`` and once as it is in the working
tree, in alternating order (base first in even rounds, the working tree first in odd ones).
Prints, per round and over all rounds, the mean wall time a capture of each and their ratio,
then each one's Acc@15 over the captures' view pairs (the two differ only where the
registrations do).

Why: separate ``sparp-ros eval`` runs of the same code on this machine measured 1.77, 2.05 and
2.08 s a capture in different sittings, more than the 2 s bar's margin and more than most
changes cost. Interleaved in one process, the base and the change see the same machine; the
rounds still differ by a few per cent, so a change costs something only where every round
says so. The first reconstruction (the model's load) is made once before, untimed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MODULE = "sparp_ros/geometry/registration.py"


def load_revision(revision: str, path: str = MODULE, repo: Path | None = None):
    """``path`` as it is in git ``revision``, imported as a module of the same package (its relative
    imports resolve as the working tree's do)."""
    repo = repo or Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout
    package = path[:-3].replace("/", ".").rsplit(".", 1)[0]
    name = f"{package}._at_{''.join(c if c.isalnum() else '_' for c in revision)}"
    module = types.ModuleType(name)
    module.__package__ = package
    sys.modules[name] = module          # dataclasses look their module up while it is executed
    exec(compile(text, f"{revision}:{path}", "exec"), module.__dict__)
    return module


@contextmanager
def registration_of(module):
    """The RGB-D stage (``geometry.measured``) calling ``module``'s registration functions: every
    function it imported from ``geometry.registration`` is replaced by ``module``'s of the same
    name while the block runs."""
    import sparp_ros.geometry.measured as measured
    names = [n for n, v in vars(measured).items()
             if callable(v) and getattr(v, "__module__", "") == "sparp_ros.geometry.registration"
             and hasattr(module, n)]
    before = {n: getattr(measured, n) for n in names}
    try:
        for n in names:
            setattr(measured, n, getattr(module, n))
        yield names
    finally:
        for n, v in before.items():
            setattr(measured, n, v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captures", type=Path)
    parser.add_argument("--base", default="HEAD~1", help="git revision of the registration to compare")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    import sparp_ros.geometry.registration as current
    from sparp_ros.capture import load_capture
    from sparp_ros.evaluation.metrics import relative_rotation_errors
    from sparp_ros.evaluation.run import expand_capture_dirs
    from sparp_ros.pipeline import reconstruct_capture

    base = load_revision(args.base)
    captures = [load_capture(d) for d in expand_capture_dirs([args.captures])]
    if not captures:
        print(f"no captures under {args.captures}")
        return 1
    # the first reconstruction loads the model and warms its caches: untimed, or the revision
    # that happens to go first would pay for it
    reconstruct_capture(captures[0], backend="model", align_with_camera_motion=False)
    times: dict[str, list[float]] = {"base": [], "working tree": []}
    errors: dict[str, list[float]] = {"base": [], "working tree": []}
    for round_ in range(args.rounds):
        order = [("base", base), ("working tree", current)]
        if round_ % 2:
            order.reverse()
        for capture in captures:
            for tag, module in order:
                with registration_of(module):
                    start = time.perf_counter()
                    recon = reconstruct_capture(capture, backend="model", align_with_camera_motion=False)
                    times[tag].append(time.perf_counter() - start)
                if round_ == 0:
                    T = [v.T_camera_object if v.ok and v.T_camera_object is not None else None
                         for v in recon.views]
                    errors[tag] += list(relative_rotation_errors(T, capture.gt.T_camera_object))
        n = len(captures)
        b, w = np.mean(times["base"][-n:]), np.mean(times["working tree"][-n:])
        print(f"round {round_ + 1}: {args.base} {b:.3f} s a capture, working tree {w:.3f} s "
              f"(ratio {w / b:.3f})", flush=True)
    b, w = np.mean(times["base"]), np.mean(times["working tree"])
    print(f"all rounds: {args.base} {b:.3f} s a capture, working tree {w:.3f} s (ratio {w / b:.3f})")
    for tag, e in errors.items():
        print(f"{tag}: Acc@15 {np.mean(np.asarray(e) <= 15.0):.3f} over {len(e)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
