"""State packing: checkpoints of an earlier vaekit resume exactly; a checkpoint written on CUDA (RNG states of
CUDA generators) resumes on a CPU-only machine; on CUDA the CUDA streams are restored exactly."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
import torch

from vaekit.config import TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO, FactorVAE
from vaekit.training import Trainer, load_checkpoint, save_checkpoint
from vaekit.training.state import NoiseStream, TrainState, pack_optimizers, unpack_optimizers, unpack_rng

DATA = Path(__file__).parent / "data"


class Kill(Exception):
    pass


def _kill_at(step):
    def kill(trainer, record):
        if record["step"] == step:
            raise Kill

    return kill


# -- a checkpoint of vaekit 0.1.0 ------------------------------------------------------------------------------
def _factor_vae_run(run_dir, callbacks=None) -> Trainer:
    """The run that wrote data/factor_vae_step6_v0.1.0.safetensors (killed after step 7; 'last' is step 6): a
    FactorVAE objective (its own optimizer and state), weight averaging, dynamic binarisation, cosine LR."""
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_vae((6,), latent_dim=2, hidden=(8,))
    obj = FactorVAE(latent_dim=2, hidden=(4,), gamma=2.0)
    s = TrainConfig(steps=10, batch_size=8, lr=0.01, val_every=3, checkpoint_every=3, ema_decay=0.9,
                    progress=False, lr_schedule="cosine")
    return Trainer(model, obj, x[:32], x[32:], settings=s, run_dir=run_dir, seed=2,
                   transform=lambda x, g: torch.bernoulli(x, generator=g), callbacks=callbacks)


def test_a_checkpoint_of_vaekit_0_1_0_resumes_to_the_uninterrupted_run(tmp_path):
    """The stored checkpoint was written by the trainer before its state packing moved to its own module (keys
    optim.*, aux.discriminator.optim.*, objective.*, ema.*, rng.torch/data/aug, data.perm); resuming it with
    today's trainer ends with the weights of an uninterrupted run (to the rounding of the CPU it runs on)."""
    full = _factor_vae_run(tmp_path / "full")
    full.fit()
    resumed = _factor_vae_run(tmp_path / "resumed")
    resumed.restore(DATA / "factor_vae_step6_v0.1.0.safetensors")
    assert (resumed.state.step, resumed.state.epoch, resumed.state.batch) == (6, 1, 2)
    resumed.fit()
    # The stored steps 1-6 were computed on another CPU, whose kernels may round differently in the last bit: on
    # an AVX-512 machine without AMX the weights differ from the stored ones by 1 ulp (3e-8). A state restored
    # wrongly differs by far more after the 4 steps: measured, with the Adam moments zeroed 5e-3, the data
    # generator reseeded 6e-4, the permutation reversed 5e-3, the model's noise reseeded 4e-3 (model weights).
    close = dict(rtol=0, atol=1e-6)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(b, a, **close, msg=k)
    for a, b in zip(full.ema.model.state_dict().values(), resumed.ema.model.state_dict().values()):
        torch.testing.assert_close(b, a, **close)
    for a, b in zip(full.objective.state_dict().values(), resumed.objective.state_dict().values()):
        torch.testing.assert_close(b, a, **close)


def test_optimizers_and_train_state_round_trip():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    aux_p = torch.nn.Parameter(torch.ones(4))
    aux = {"critic": torch.optim.Adam([aux_p], lr=0.2)}
    model(torch.ones(1, 3)).sum().backward()
    aux_p.grad = torch.ones(4)
    opt.step()
    aux["critic"].step()
    tensors, doc = pack_optimizers(opt, aux)
    assert set(doc) == {"optimizer", "aux_optimizers"} and "aux.critic.optim.0.exp_avg" in tensors
    opt2 = torch.optim.Adam(model.parameters(), lr=0.5)
    aux2 = {"critic": torch.optim.Adam([aux_p], lr=0.5)}
    unpack_optimizers(opt2, aux2, tensors, doc)
    assert opt2.param_groups[0]["lr"] == 0.1 and aux2["critic"].param_groups[0]["lr"] == 0.2
    assert torch.equal(aux2["critic"].state[aux_p]["exp_avg"], aux["critic"].state[aux_p]["exp_avg"])
    assert TrainState.from_doc({"step": 5, "a_later_field": 1}) == TrainState(step=5)


# -- devices at load time ----------------------------------------------------------------------------------------
def _elbo_run(run_dir, device="cpu", callbacks=None, steps=12) -> tuple[Trainer, list[float]]:
    """4 steps per epoch; 'last' every 3 steps."""
    losses: list[float] = []
    x = (torch.rand(64, 12, generator=torch.Generator().manual_seed(0)) < 0.4).float().to(device)
    torch.manual_seed(0)
    model = build_vae((12,), latent_dim=3, hidden=(16,)).to(device)
    s = TrainConfig(steps=steps, batch_size=16, lr=0.01, checkpoint_every=3, progress=False)
    tr = Trainer(model, ELBO(), x, None, settings=s, run_dir=run_dir, seed=0,
                 callbacks=[lambda t, r: losses.append(r["loss"]), *(callbacks or [])])
    return tr, losses


def _philox(seed: int, offset: int) -> torch.Tensor:
    """The state a CUDA generator's get_state() returns: its Philox seed and offset, 16 bytes."""
    return torch.tensor(list(struct.pack("<QQ", seed, offset)), dtype=torch.uint8)


def test_a_checkpoint_with_cuda_rng_states_resumes_on_a_cpu_only_machine(tmp_path, caplog):
    """A checkpoint as a CUDA run writes it (a CUDA noise state, and data-order and transform generators that were
    CUDA generators) resumes on CPU: the CPU noise stream and the current epoch's permutation are restored, so
    the epoch's remaining steps are those of the uninterrupted run; the generators of another kind are seeded
    from the saved states, with a warning, the same way on every resume."""
    full, full_losses = _elbo_run(tmp_path / "full")
    full.fit()
    part, _ = _elbo_run(tmp_path / "part", callbacks=[_kill_at(7)])
    with pytest.raises(Kill):
        part.fit()
    tensors, doc = load_checkpoint(tmp_path / "part" / "last.safetensors")  # step 6: epoch 1, batch 2
    assert "rng.cuda" not in tensors and tensors["rng.data"].numel() == 5056  # a CPU run's
    tensors.update({"rng.cuda": _philox(6, 4 * 6), "rng.data": _philox(0, 8), "rng.aug": _philox(1, 0)})
    save_checkpoint(tmp_path / "cuda.safetensors", tensors, doc)

    runs = []
    for _ in range(2):
        caplog.clear()
        tr, losses = _elbo_run(tmp_path / "resumed")
        with caplog.at_level(logging.WARNING, logger="vaekit.train"):
            tr.restore(tmp_path / "cuda.safetensors")
        assert "another kind of device (the data order, the batch transform)" in caplog.text
        assert "cuda" not in tr.noise.state()  # a CPU trainer has no CUDA stream to take the saved one
        assert torch.equal(tr.noise.state()["cpu"], tensors["rng.torch"])
        assert torch.equal(tr.perm, tensors["data.perm"])
        tr.fit()
        runs.append(losses)
    assert runs[0][:2] == full_losses[6:8]  # steps 7 and 8 finish the saved epoch exactly
    assert runs[0][2:] != full_losses[8:]  # later epochs' order comes from the derived seed
    assert runs[1] == runs[0]  # reproducible: the same seeds on every resume


def test_a_cpu_checkpoint_restores_its_generators_exactly_and_silently(tmp_path, caplog):
    part, _ = _elbo_run(tmp_path / "part", callbacks=[_kill_at(7)])
    with pytest.raises(Kill):
        part.fit()
    tensors, _ = load_checkpoint(tmp_path / "part" / "last.safetensors")
    tr, _ = _elbo_run(tmp_path / "part")
    with caplog.at_level(logging.WARNING, logger="vaekit.train"):
        tr.restore(tmp_path / "part" / "last.safetensors")
    assert caplog.text == ""
    assert torch.equal(tr.data_gen.get_state(), tensors["rng.data"])
    assert torch.equal(tr.aug_gen.get_state(), tensors["rng.aug"])


def test_the_noise_stream_installs_its_state_and_leaves_the_global_rng_as_found():
    stream = NoiseStream(torch.device("cpu"), seed=5)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with stream.active():
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(5)))
    with stream.active():  # the stream goes on where it stopped
        b = torch.rand(3)
    g = torch.Generator().manual_seed(5)
    torch.rand(3, generator=g)
    assert torch.equal(b, torch.rand(3, generator=g))


def test_cuda_rng_states_are_restored_exactly_on_cuda(tmp_path, device):
    """On a GPU (pytest --device cuda): a killed run resumes to the uninterrupted run's weights, its CUDA noise
    and generators restored as saved; and the same CUDA checkpoint resumes on the CPU."""
    if device.type != "cuda":
        pytest.skip("needs --device cuda")
    full, full_losses = _elbo_run(tmp_path / "full", device)
    full.fit()
    part, _ = _elbo_run(tmp_path / "part", device, callbacks=[_kill_at(7)])
    with pytest.raises(Kill):
        part.fit()
    tensors, _ = load_checkpoint(tmp_path / "part" / "last.safetensors")
    assert tensors["rng.cuda"].numel() == tensors["rng.data"].numel() == 16
    resumed, losses = _elbo_run(tmp_path / "part", device)
    resumed.restore(tmp_path / "part" / "last.safetensors")
    assert torch.equal(resumed.noise.state()["cuda"], tensors["rng.cuda"])
    assert torch.equal(resumed.data_gen.get_state(), tensors["rng.data"])
    resumed.fit()
    assert losses == full_losses[6:]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    on_cpu, cpu_losses = _elbo_run(tmp_path / "cpu", "cpu")
    on_cpu.restore(tmp_path / "part" / "last.safetensors")
    on_cpu.fit()
    assert len(cpu_losses) == 6 and all(torch.isfinite(torch.tensor(cpu_losses)))


def test_unpack_rng_leaves_cuda_fields_to_a_cuda_stream():
    """On a CPU trainer a saved CUDA noise state is not applied (there is no CUDA stream to take it)."""
    stream = NoiseStream(torch.device("cpu"), seed=0)
    cpu_state = torch.Generator().manual_seed(9).get_state()
    tensors = {"rng.torch": cpu_state, "rng.cuda": _philox(1, 2), "rng.data": cpu_state, "rng.aug": cpu_state}
    gens = torch.Generator(), torch.Generator()
    assert unpack_rng(tensors, 0, stream, *gens) is None
    assert set(stream.state()) == {"cpu"} and torch.equal(stream.state()["cpu"], cpu_state)
    assert torch.equal(gens[0].get_state(), cpu_state)
