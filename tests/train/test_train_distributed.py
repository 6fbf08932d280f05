"""Data-parallel training: 2 CPU processes (gloo) end with the same weights as each other and as
one process with the same global batch (features gathered across ranks, with gradient)."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from fashionclip.train import load_train_config, train
from test_train_support import base_overrides, make_pairs


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all bound at once, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _worker(
    rank: int, world_size: int, ports: list[int], runs: dict[str, list[str]], out: str
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    # One process group per run, same processes. Each group gets its own rendezvous port:
    # re-using the port of the group just destroyed can hang while its store shuts down.
    for port, (name, overrides) in zip(ports, runs.items(), strict=True):
        os.environ["MASTER_PORT"] = str(port)
        result = train(load_train_config(None, overrides))
        state = {
            k: v.detach().contiguous().clone() for k, v in result.model.module.state_dict().items()
        }
        save_file(state, os.path.join(out, f"{name}-rank{rank}.safetensors"))


def test_two_cpu_processes_match_each_other_and_a_single_process(tmp_path, tiny_model_dirs):
    train_csv, val_csv = make_pairs(tmp_path / "data", n=32, n_val=8)
    common = base_overrides(tmp_path, tiny_model_dirs["clip"], train_csv, val_csv) + ["epochs=1"]
    runs = {
        name: [*common, f"loss.local_loss={local}", f"output_dir={tmp_path / name}"]
        for name, local in (("global", "false"), ("local", "true"))
    }
    ports = _free_ports(len(runs))
    mp.spawn(_worker, args=(2, ports, runs, str(tmp_path)), nprocs=2, join=True)
    single = train(load_train_config(None, [*common, f"output_dir={tmp_path / 'single'}"]))
    reference = single.model.module.state_dict()
    initial = load_file(str(tiny_model_dirs["clip"] / "model.safetensors"))
    for name in runs:
        rank0 = load_file(str(tmp_path / f"{name}-rank0.safetensors"))
        rank1 = load_file(str(tmp_path / f"{name}-rank1.safetensors"))
        moved = 0
        for key, value in rank0.items():
            assert torch.equal(value, rank1[key]), (name, key)
            # the global batch of 2 x 4 trains like one process with a batch of 8
            assert torch.allclose(value, reference[key], atol=2e-5), (name, key)
            moved += key in initial and not torch.equal(initial[key], value)
        assert moved > 10
        # the checkpoint is written once (by rank 0) and holds both ranks' RNG states
        state_dir = tmp_path / name / "last" / "training_state"
        assert sorted(p.name for p in state_dir.glob("rng-rank*")) == [
            "rng-rank0.safetensors",
            "rng-rank1.safetensors",
        ]
