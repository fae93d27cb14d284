"""Sequence models against the literature, at a stated budget (steps and process CPU seconds).

  jsb     a deep Markov model (model.family=dmm, Pyro's sizes: z 100, transition 200, emission 100, RNN 600) on
          JSB Chorales, Adam with KL annealing from --min-af to 1 (as Pyro's dmm.py), batches of 20 chorales.
          After every epoch: the test negative ELBO per time step (nats; total over the test chorales divided by
          their 4,725 steps, the literature's unit). At the end: the importance-sampled bound (K = --iw samples)
          on the test set. Targets: Pyro's DMM 6.87, Krishnan et al. (2017) 6.93, Pyro with 2 IAF steps 6.80.
  mmnist  a DMM on Moving MNIST (Bernoulli frames), then prediction of frames 11-20 from frames 1-10: the
          posterior over steps 1-10 given the first 10 frames, its means rolled forward by the transition's means,
          each frame's mean decoded; per-frame BCE and MSE against copying frame 10.

The objective is vaekit's ELBO (``vaekit.objectives.ELBO``) on the model contract, the loop a plain Adam loop
over the in-memory tensors (a bench of the model, not of the trainer). One thread.

          --family vrnn: a variational RNN instead (z 16, GRU 128, feature nets 128); --family srnn: a stochastic
          RNN (Fraccaro et al. 2016; z 100, GRUs 300, nets 500: the paper's music setting).
          --iaf-steps K: K inverse autoregressive flow steps on each step's posterior (model.iaf_steps; Pyro's
          --num-iafs, its table's 6.80 with K = 2), MADE width --iaf-dim (100).
  chorales  new chorales from the DMM that ``jsb --save`` wrote: piano-roll figure and MIDI files (mido).
  steptime  CPU seconds of one DMM training step with the padded and with a packed backward RNN, and of one
          epoch in random and in length-bucketed batches (--reps repetitions, medians).

Usage: python bench/sequences.py jsb --cpu-seconds 1200 [--epochs N] [--iaf-steps 2] [--save dmm.safetensors]
           [--checkpoint dmm.pt]   (continue a run in pieces: the same command again)
       python bench/sequences.py chorales --load dmm.safetensors --figure chorales.png
       python bench/sequences.py mmnist --cpu-seconds 600
Data from $VAEKIT_DATA_DIR (jsb_chorales/, mnist/). --json FILE writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from vaekit.config import ModelConfig
from vaekit.data import load_data
from vaekit.data.sequences import lengths_of
from vaekit.models.registry import build_family
from vaekit.objectives import ELBO, elbo_terms, iwae_bound
from vaekit.utils import atomic_write


def per_step(model, x: torch.Tensor, iw: int = 0, batch: int = 40, samples: int = 1) -> float:
    """Negative ELBO (iw = 0) or negative IWAE_iw bound, summed over the sequences, per observed time step; the
    mean of ``samples`` independent estimates (the same bound, less Monte Carlo noise)."""
    if iw == 0:
        return elbo_per_step(model, x, batch, samples)[0]
    total = 0.0
    with torch.no_grad():
        for _ in range(samples):
            for i in range(0, len(x), batch):
                total -= float(iwae_bound(model, x[i : i + batch], iw).sum())
    return total / samples / float(lengths_of(x).sum())


def elbo_per_step(model, x: torch.Tensor, batch: int = 40, samples: int = 1) -> tuple[float, float]:
    """(negative ELBO, its KL term) per observed time step from the same passes: the KL says how much the model
    uses its latent path."""
    nelbo, kl = 0.0, 0.0
    with torch.no_grad():
        for _ in range(samples):
            for i in range(0, len(x), batch):
                t = elbo_terms(model, x[i : i + batch], 1)
                nelbo -= float(t.elbo.sum())
                kl += float(t.kl.sum())
    steps = samples * float(lengths_of(x).sum())
    return nelbo / steps, kl / steps


def transpose(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Each piano roll of x (B, T, 88 + 1) shifted by its own random number of semitones in [-k, k] (the mask
    feature kept): a chorale in another key. Raises if a shift would push a note off the keyboard."""
    notes, mask = x[..., :-1], x[..., -1:]
    shift = torch.randint(-k, k + 1, (x.shape[0],), generator=g)
    keys = torch.arange(notes.shape[-1])
    src = keys[None, :] - shift[:, None]  # (B, 88): the key each output key copies
    inside = (src >= 0) & (src < notes.shape[-1])
    moved = torch.gather(notes, 2, src.clamp(0, notes.shape[-1] - 1)[:, None, :].expand_as(notes)) * inside[:, None]
    if float(moved.sum()) != float(notes.sum()):
        raise ValueError(f"--transpose {k} pushes notes off the keyboard")
    return torch.cat([moved, mask], -1)


def epoch_batches(n: int, lengths: torch.Tensor, batch: int, bucket: bool, g: torch.Generator) -> list:
    """One epoch's index batches: a random order split into batches, or with ``bucket`` sequences of similar
    length together (ties in random order) and the batches shuffled."""
    order = torch.randperm(n, generator=g)
    if not bucket:
        return list(order.split(batch))
    chunks = order[torch.sort(lengths[order], stable=True).indices].split(batch)
    return [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]


# arguments that may change when a checkpointed run is continued: the budget and where things are written
_RESUMABLE_CHANGES = {"epochs", "cpu_seconds", "checkpoint", "json", "save", "figure", "iw"}


def train(model, data, args, on_epoch) -> dict:
    """Adam over the training split, evaluating with ``on_epoch`` every --eval-every epochs. With --checkpoint
    the whole state (weights, optimiser, schedule, random generators, curve, best weights, CPU seconds spent) is
    written after every evaluation and a run continues from it, giving the uninterrupted run's numbers; the
    CPU budget counts across the pieces."""
    # weight_decay: an L2 term added to the gradient (coupled, as Pyro's ClippedAdam); lr_decay: lr *= it per step
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.96, 0.999), weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, args.lr_decay)
    g = torch.Generator().manual_seed(0)
    n, steps, spent, start = len(data.train), 0, 0.0, 0
    lengths = lengths_of(data.train.x)
    curve, best = [], (math.inf, None, None)
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in _RESUMABLE_CHANGES}
    ck = getattr(args, "checkpoint", None)
    if ck and os.path.exists(ck):
        state = torch.load(ck, weights_only=True)
        changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
        if changed:
            raise SystemExit(f"--checkpoint {ck} was written with other settings ({', '.join(changed)}); give "
                             "the same arguments, or another --checkpoint path for a new run")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        start, steps, spent, curve = state["epoch"], state["steps"], state["cpu_s"], state["curve"]
        if state["best_row"] is not None:
            best = (state["best_row"]["val_nelbo_per_step"], state["best_model"], state["best_row"])
        print(f"continuing {ck} after epoch {start} ({steps} steps, {spent:.0f} CPU s)", flush=True)
    t0 = time.process_time() - spent
    for epoch in range(start, args.epochs):
        beta = min(1.0, args.min_af + (1 - args.min_af) * epoch / max(1, args.anneal_epochs))
        objective = ELBO(beta=beta, free_bits=args.free_bits)
        model.train()
        for idx in epoch_batches(n, lengths, args.batch, args.bucket, g):
            xb = data.train.x[idx]
            if args.transpose:
                xb = transpose(xb, args.transpose, g)
            loss = objective(model, xb).loss
            opt.zero_grad()
            loss.backward()
            if args.clip_value:  # elementwise, as Pyro's ClippedAdam (before its weight decay is added)
                torch.nn.utils.clip_grad_value_(model.parameters(), args.clip_value)
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
            opt.step()
            sched.step()
            steps += 1
        model.eval()
        done = time.process_time() - t0 > args.cpu_seconds or epoch + 1 == args.epochs
        if (epoch + 1) % args.eval_every and not done and epoch > 4:
            continue
        row = {"epoch": epoch + 1, "steps": steps, "cpu_s": round(time.process_time() - t0, 1), "beta": beta,
               "lr": float(f"{sched.get_last_lr()[0]:.3g}"), **on_epoch(model)}
        curve.append(row)
        print(json.dumps(row), flush=True)
        if "val_nelbo_per_step" in row and beta == 1.0 and row["val_nelbo_per_step"] < best[0]:
            best = (row["val_nelbo_per_step"], {k: v.clone() for k, v in model.state_dict().items()}, row)
        if ck:
            state = {"settings": settings, "model": model.state_dict(), "opt": opt.state_dict(),
                     "sched": sched.state_dict(), "generator": g.get_state(), "rng": torch.get_rng_state(),
                     "epoch": epoch + 1, "steps": steps, "cpu_s": time.process_time() - t0, "curve": curve,
                     "best_row": best[2], "best_model": best[1]}
            atomic_write(ck, lambda tmp: torch.save(state, tmp))
        if done:
            break
    out = {"curve": curve, "steps": steps, "cpu_s": time.process_time() - t0}
    if best[1] is not None:  # the model selected on the validation split (at KL weight 1), not on the test split
        out["selected_by_val"] = best[2]
        model.load_state_dict(best[1])
    return out


def jsb(args) -> dict:
    data = load_data("jsb-chorales")
    torch.manual_seed(args.seed)
    sizes = {"dmm": {"latent_dim": 100, "transition_dim": 200, "emission_dim": 100, "rnn_dim": 600},
             "vrnn": {"latent_dim": 16, "rnn_dim": 128, "phi_dim": 128, "dropout": args.dropout},
             "srnn": {"latent_dim": 100, "rnn_dim": 300, "phi_dim": 500, "dropout": args.dropout,
                      "emission_uses_d": not args.emission_without_d}}[args.family]
    sizes.update({k: v for k, v in (("latent_dim", args.latent_dim), ("rnn_dim", args.rnn_dim),
                                    ("phi_dim", args.phi_dim)) if v is not None})
    if args.dropout and args.family == "dmm":
        raise SystemExit("--dropout is an option of the VRNN and the SRNN (--family vrnn, srnn)")
    if args.iaf_steps:
        if args.family != "dmm":
            raise SystemExit("--iaf-steps is an option of the DMM (--family dmm)")
        sizes.update(iaf_steps=args.iaf_steps, iaf_dim=args.iaf_dim)
    model = build_family(ModelConfig(family=args.family, likelihood="bernoulli", **sizes), data.shape)
    s = args.eval_samples
    # the bound on a fixed quarter of the training split beside validation: the gap says over- or under-fitting
    train_part = data.train.x[torch.randperm(len(data.train.x), generator=torch.Generator().manual_seed(1))[:76]]

    def on_epoch(m) -> dict:
        val, val_kl = elbo_per_step(m, data.val.x, samples=s)
        return {"train76_nelbo_per_step": round(per_step(m, train_part, samples=s), 4),
                "val_nelbo_per_step": round(val, 4), "val_kl_per_step": round(val_kl, 4),
                "test_nelbo_per_step": round(per_step(m, data.test.x, samples=s), 4)}

    out = train(model, data, args, on_epoch)
    if args.save:
        from safetensors.torch import save_file

        atomic_write(args.save, lambda tmp: save_file(model.state_dict(), tmp))
    torch.manual_seed(1)
    out["test_nelbo_per_step"] = per_step(model, data.test.x, samples=args.eval_samples)
    out["test_iw_per_step"] = per_step(model, data.test.x, iw=args.iw, batch=8)
    out["targets"] = {"pyro_dmm": 6.87, "krishnan_2017": 6.93, "pyro_dmm_iaf2": 6.80}
    out["iaf_steps"] = args.iaf_steps
    target = 6.80 if args.iaf_steps else 6.87
    print(f"JSB test -ELBO/step {out['test_nelbo_per_step']:.3f} nats, -IWAE_{args.iw}/step "
          f"{out['test_iw_per_step']:.3f} (target {target}: missed by {out['test_nelbo_per_step'] - target:+.3f}) "
          f"after "
          f"{out['steps']} steps, {out['cpu_s']:.0f} CPU s; weights of epoch "
          f"{out.get('selected_by_val', {}).get('epoch', 'last')} (best validation bound)")
    return out


def chorales(args) -> dict:
    """New chorales from a trained DMM (--load, written by ``jsb --save``): ancestral samples of the latent path,
    each step's notes drawn from p(x_t | z_t); a piano-roll figure and (with mido) one MIDI file each."""
    from safetensors.torch import load_file

    from vaekit.models.uses import sample_latents
    from vaekit.plots.sequences import plot_piano_rolls

    model = build_family(ModelConfig(family="dmm", likelihood="bernoulli", latent_dim=100, transition_dim=200,
                                     emission_dim=100, rnn_dim=600, iaf_steps=args.iaf_steps,
                                     iaf_dim=args.iaf_dim), (160, 89))
    model.load_state_dict(load_file(args.load))
    model.eval()
    torch.manual_seed(args.seed)
    with torch.no_grad():
        rolls = model.decode(sample_latents(model, 4)).sample()[:, : args.steps, :-1].numpy()  # (4, steps, 88)
    out = {"figure": str(plot_piano_rolls(list(rolls), args.figure, titles=[f"sample {i}" for i in range(4)]))}
    out["notes_per_step"] = float(rolls.sum(-1).mean())
    try:
        from vaekit.apps.midi import write_midi

        out["midi"] = [str(write_midi(r, args.figure.replace(".png", f"-{i}.mid"))) for i, r in enumerate(rolls)]
    except ImportError as e:
        out["midi"] = str(e)
    print(json.dumps(out))
    return out


def predict_frames(model, x: torch.Tensor, context: int = 10) -> torch.Tensor:
    """Means of frames context+1..T (B, T - context, D) from the first ``context`` frames: q's mean path over
    the context, then the transition's means, decoded."""
    seen = x.clone()
    seen[:, context:] = 0  # the future is not observed: the step mask ends after the context
    with torch.no_grad():
        z = model.posteriors(seen)["z"].mean[:, :context]  # (B, context, Dz)
        z_prev, future = z[:, -1], []
        for _ in range(x.shape[1] - context):
            z_prev = model.transition(z_prev)[0]
            future.append(z_prev)
        path = torch.cat([z, torch.stack(future, 1)], 1)
        return model.decode(path).mean[:, context:, :-1]


def mmnist(args) -> dict:
    data = load_data("moving-mnist", options={"n_train": args.n_train, "n_val": 0, "n_test": args.n_test})
    torch.manual_seed(args.seed)
    model = build_family(ModelConfig(family="dmm", likelihood="bernoulli", latent_dim=32, transition_dim=128,
                                     emission_dim=256, rnn_dim=256), data.shape)
    out = train(model, data, args, lambda m: {"test_nelbo_per_frame": round(per_step(m, data.test.x), 2)})
    x = data.test.x
    pred = predict_frames(model, x).clamp(1e-6, 1 - 1e-6)  # (B, 10, D)
    truth, last = x[:, 10:, :-1], x[:, 9:10, :-1].expand(-1, 10, -1).clamp(1e-6, 1 - 1e-6)

    def bce(p):
        return -(truth * p.log() + (1 - truth) * (1 - p).log()).sum(-1).mean(0)  # (10,) nats per frame

    def mse(p):
        return (truth - p).square().sum(-1).mean(0)  # (10,) per frame

    out["table"] = [{"frame": 11 + i, "bce_dmm": float(bce(pred)[i]), "bce_copy_last": float(bce(last)[i]),
                     "mse_dmm": float(mse(pred)[i]), "mse_copy_last": float(mse(last)[i])} for i in range(10)]
    print("frame  BCE dmm  BCE copy-last  MSE dmm  MSE copy-last")
    for r in out["table"]:
        print(f"{r['frame']:5d} {r['bce_dmm']:8.1f} {r['bce_copy_last']:14.1f} {r['mse_dmm']:8.1f} "
              f"{r['mse_copy_last']:14.1f}")
    if args.figure:
        from vaekit.plots import save_image_grid  # noqa: optional figure

        rows = torch.cat([x[:4, :, :-1], torch.cat([x[:4, :10, :-1], pred[:4]], 1)], 0)  # truth, then prediction
        save_image_grid(rows.reshape(-1, 1, 64, 64), args.figure, nrow=20)
    return out


def _packed_encoder(enc):
    """The backward RNN as a packed sequence (the reference the padded one replaced; equal outputs)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    def forward(values, mask):
        B, T, _ = values.shape
        lengths = mask.sum(1).long().clamp(min=1)
        t = torch.arange(T)
        idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
        rev = values.gather(1, idx.unsqueeze(-1).expand_as(values))
        packed = pack_padded_sequence(rev, lengths, batch_first=True, enforce_sorted=False)
        out, _ = enc.rnn(packed, enc.h0.expand(1, B, -1).contiguous())
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return out.gather(1, idx.unsqueeze(-1).expand_as(out))

    return forward


def steptime(args) -> dict:
    """CPU seconds of one training step (forward + backward) of the DMM at Pyro's sizes on the 20 longest
    training chorales (129 steps), with the library's backward RNN (padded) and with a packed one, and of one
    training epoch (229 chorales, batches of 20) in random order and length-bucketed. Medians of --reps."""
    data = load_data("jsb-chorales")
    torch.manual_seed(args.seed)
    model = build_family(ModelConfig(family="dmm", likelihood="bernoulli"), data.shape)
    x = data.train.x
    longest = x[torch.argsort(lengths_of(x))[-args.batch:]]

    def cpu(fn) -> float:
        fn()
        times = []
        for _ in range(args.reps):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return sorted(times)[len(times) // 2]

    def step(xb):
        ELBO()(model, xb).loss.backward()

    out = {"step_padded_s": cpu(lambda: step(longest))}
    padded = model.encoder.forward
    model.encoder.forward = _packed_encoder(model.encoder)
    out["step_packed_s"] = cpu(lambda: step(longest))
    model.encoder.forward = padded
    lengths = lengths_of(x)
    g = torch.Generator().manual_seed(0)

    def epoch(bucket: bool):
        for idx in epoch_batches(len(x), lengths, args.batch, bucket, g):
            step(x[idx])

    out["epoch_random_s"] = cpu(lambda: epoch(False))
    out["epoch_bucketed_s"] = cpu(lambda: epoch(True))
    print(f"DMM training step, 20 chorales of 129 steps: padded backward RNN {out['step_padded_s']:.3f} CPU s, "
          f"packed {out['step_packed_s']:.3f} ({out['step_packed_s'] / out['step_padded_s']:.2f}x)")
    print(f"DMM training epoch (229 chorales, batches of {args.batch}): random order {out['epoch_random_s']:.2f} "
          f"CPU s, length-bucketed {out['epoch_bucketed_s']:.2f} "
          f"({out['epoch_random_s'] / out['epoch_bucketed_s']:.2f}x)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["jsb", "mmnist", "chorales", "steptime"])
    ap.add_argument("--epochs", type=int, default=5000)
    ap.add_argument("--family", choices=["dmm", "vrnn", "srnn"], default="dmm", help="jsb: the sequence family")
    ap.add_argument("--iaf-steps", type=int, default=0, help="jsb/chorales: IAF steps on the DMM's posterior")
    ap.add_argument("--iaf-dim", type=int, default=100, help="jsb/chorales: width of each IAF step's MADE")
    ap.add_argument("--latent-dim", type=int, default=None, help="jsb: size of z_t (DMM 100, VRNN 16, SRNN 100)")
    ap.add_argument("--rnn-dim", type=int, default=None, help="jsb: RNN state size (DMM 600, VRNN 128, SRNN 300)")
    ap.add_argument("--phi-dim", type=int, default=None, help="jsb, VRNN/SRNN: width of the feature and head nets "
                    "(VRNN 128, SRNN 500)")
    ap.add_argument("--dropout", type=float, default=0.0, help="jsb, VRNN/SRNN: model.dropout (the "
                    "non-recurrent connections: phi_x, the emission net, and the SRNN's d_t)")
    ap.add_argument("--emission-without-d", action="store_true", help="jsb, SRNN: p(x_t | z_t) alone "
                    "(model.emission_uses_d=false)")
    ap.add_argument("--cpu-seconds", type=float, default=1200.0, help="stop after the epoch that passes this")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--transpose", type=int, default=0, help="jsb: shift each training chorale by a random number "
                    "of semitones in [-K, K] per batch (data augmentation: the same chorale in another key)")
    ap.add_argument("--bucket", action="store_true", help="batch sequences of similar length together (fewer "
                    "padded steps per batch: each step of the time loop costs the same for the whole batch)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip-norm", type=float, default=10.0, help="clip the gradient's global norm to this (the "
                    "SRNN paper's code: 1)")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="L2 added to the gradient (Pyro's DMM: 2.0 "
                    "on a loss summed over 20 chorales, i.e. 0.1 on vaekit's mean over the batch)")
    ap.add_argument("--clip-value", type=float, default=0.0, help="clip each gradient element to +-this instead "
                    "of the global norm to 10 (Pyro: 10 on the summed loss, i.e. 0.5 on the mean over 20)")
    ap.add_argument("--lr-decay", type=float, default=1.0, help="lr multiplied by this after every step (Pyro: "
                    "0.99996)")
    ap.add_argument("--eval-samples", type=int, default=1, help="ELBO estimates averaged per evaluation")
    ap.add_argument("--min-af", type=float, default=0.2, help="KL weight at the start (annealed to 1)")
    ap.add_argument("--anneal-epochs", type=int, default=100)
    ap.add_argument("--free-bits", type=float, default=0.0, help="jsb: free bits per latent unit (one step's one "
                    "dimension; Kingma et al. 2016): the training loss only, the printed bounds are the ELBO")
    ap.add_argument("--iw", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and the first 5, and "
                    "the last); jsb keeps the weights with the best validation bound at KL weight 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--figure", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--save", default=None, help="jsb: write the trained weights (safetensors) here")
    ap.add_argument("--checkpoint", default=None, help="jsb/mmnist: write the training state here after every "
                    "evaluation, and continue from it when it exists (the same arguments; a larger --cpu-seconds "
                    "or --epochs goes on past the first budget)")
    ap.add_argument("--load", default=None, help="chorales: the weights jsb --save wrote")
    ap.add_argument("--steps", type=int, default=64, help="chorales: steps per generated chorale")
    ap.add_argument("--reps", type=int, default=5, help="steptime: timed repetitions (the median is printed)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    # weight decay drives unused weights towards 0, and subnormal floats can make CPU arithmetic several times slower
    torch.set_flush_denormal(True)
    out = {"jsb": jsb, "mmnist": mmnist, "chorales": chorales, "steptime": steptime}[args.what](args)
    out["args"] = vars(args)
    if args.json:
        from vaekit.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
