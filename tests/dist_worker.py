"""Run under ``torchrun --nproc_per_node 2``: DDP (as the training loop sets it up) and FSDP
shards update the tiny UNet as one process does on the same global batches.

For every combination of gradient accumulation, image/video micro-steps and gradient
checkpointing, each rank trains a DDP replica and an FSDP-sharded copy with Accelerate's
``accumulate``, clipping and AdamW, while a plain single-process copy takes the concatenated
batches of both ranks. Checked: the weights and EMA agree to float rounding, the same
parameters have optimizer state, and a step whose micro-steps are all images leaves every
temporal parameter bit-identical (grad None, AdamW skips it) in all three. Prints one JSON
line per checked combination on rank 0; any failure raises.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from accelerate import Accelerator  # noqa: E402

from helpers import TEXT_DIM, tiny_unet  # noqa: E402
from pixeldance.train.distributed import ddp_kwargs, full, shard_unet  # noqa: E402
from pixeldance.train.ema import EMA  # noqa: E402

# (grad_accum, micro-steps per optimizer step, gradient checkpointing); micro-steps:
# v = a 4-frame video, i = an image (F = 1). Per micro-step and per optimizer-step image
# choices both appear: an image on the syncing micro-step, a whole image step, both mixed.
COMBOS = [
    (1, ["v", "i", "v"], False),
    (2, ["vi", "ii", "iv"], True),
    (2, ["iv", "ii"], False),
    (4, ["viii", "iiii"], True),
]
TOLERANCE = 1e-9  # float64 rounding is about 1e-13 here


def inputs(step: int, micro: int, rank: int, kind: str):
    g = torch.Generator().manual_seed(1000 * step + 10 * micro + rank)
    frames = 4 if kind == "v" else 1
    x = torch.randn(1, 8, frames, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randn(1, 4, frames, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (1,), generator=g)
    text = torch.randn(1, 3, TEXT_DIM, generator=g, dtype=torch.float64)
    return x, t, text, target


def loss_of(unet, x, t, text, target):
    return (unet(x, t, text).sample - target).pow(2).mean()


def temporal_names(unet) -> set[str]:
    return {n for n, _ in unet.named_parameters() if "temp_" in n}


def snapshot(named) -> dict[str, torch.Tensor]:
    return {n: full(p.detach()).clone() for n, p in named}


def run_combo(accelerator, accum: int, steps: list[str], checkpointing: bool) -> dict:
    rank, world = accelerator.process_index, accelerator.num_processes
    accelerator.gradient_accumulation_steps = accum
    accelerator.step = 0  # Accelerate's micro-step counter, which decides the syncing one
    start = tiny_unet().double().train()  # float64: rounding cannot hide a wrong rule
    if checkpointing:
        start.enable_gradient_checkpointing()
    models = {
        "reference": copy.deepcopy(start),
        "ddp": copy.deepcopy(start),
        "fsdp": shard_unet(copy.deepcopy(start), accelerator.device),
    }

    def adamw(m):
        return torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)

    ref_opt = adamw(models["reference"])
    ddp_model, ddp_opt = accelerator.prepare(models["ddp"], adamw(models["ddp"]))
    fsdp_opt = accelerator.prepare(adamw(models["fsdp"]))
    live = {"ddp": (ddp_model, ddp_opt), "fsdp": (models["fsdp"], fsdp_opt)}
    bases = {"reference": models["reference"], "ddp": models["ddp"], "fsdp": models["fsdp"]}
    emas = {k: EMA(m.named_parameters(), 0.9) for k, m in bases.items()}
    temporal = temporal_names(start)
    for step, kinds in enumerate(steps):
        before = {k: snapshot(m.named_parameters()) for k, m in bases.items()}
        for micro, kind in enumerate(kinds):  # one process, the global batch of both ranks
            batch = [inputs(step, micro, r, kind) for r in range(world)]
            x, t, text, target = (torch.cat(parts) for parts in zip(*batch, strict=True))
            (loss_of(models["reference"], x, t, text, target) / accum).backward()
        torch.nn.utils.clip_grad_norm_(models["reference"].parameters(), 1.0)
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        for model, opt in live.values():  # each rank its own part, as the loop trains
            for micro, kind in enumerate(kinds):
                with accelerator.accumulate(model):
                    accelerator.backward(loss_of(model, *inputs(step, micro, rank, kind)))
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
        for k, m in bases.items():
            emas[k].step(m.parameters())
        if set(kinds) == {"i"}:  # an image step: no temporal parameter may move anywhere
            for k, m in bases.items():
                after = snapshot(m.named_parameters())
                moved = [n for n in temporal if not torch.equal(after[n], before[k][n])]
                assert not moved, f"{k}: image step {step} moved {moved[:3]}"
    ref = snapshot(bases["reference"].named_parameters())
    ref_ema = snapshot(emas["reference"].named_shadows())
    ref_state = {n for n, p in bases["reference"].named_parameters() if p in ref_opt.state}
    report = {"accum": accum, "steps": steps, "checkpointing": checkpointing}
    for k in ("ddp", "fsdp"):
        got = snapshot(bases[k].named_parameters())
        got_ema = snapshot(emas[k].named_shadows())
        opt = live[k][1].optimizer
        state = {n for n, p in bases[k].named_parameters() if p in opt.state}
        diff = max((got[n] - ref[n]).abs().max().item() for n in ref)
        ema_diff = max((got_ema[n] - ref_ema[n]).abs().max().item() for n in ref_ema)
        assert state == ref_state, f"{k}: optimizer state on {sorted(state ^ ref_state)[:3]}"
        assert diff < TOLERANCE and ema_diff < TOLERANCE, f"{k}: {diff=} {ema_diff=}"
        report[k] = {"max_weight_diff": diff, "max_ema_diff": ema_diff}
    return report


def main() -> None:
    torch.use_deterministic_algorithms(True)
    accelerator = Accelerator(cpu=True, kwargs_handlers=[ddp_kwargs(True)])
    for accum, steps, checkpointing in COMBOS:
        report = run_combo(accelerator, accum, steps, checkpointing)
        if accelerator.is_main_process:
            print(json.dumps(report), flush=True)
    accelerator.end_training()


if __name__ == "__main__":
    main()
