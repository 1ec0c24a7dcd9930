"""Trains the PyTorch original for a few iterations with train_smt.py's step and saves what
train_smt.py saves: SAVE_DIR/checkpoint.pt (torch.save of {"cfg", "logs", "itr", "rnn",
"teacher", "opt"}, the RNN readout copied from the teacher decoder first) and rnn.pkl,
teacher.pkl, cfg.pkl (util.save_pkl's pickled modules). Run with a Python that has torch,
x-transformers and einops, and the original's src/ folder (--original, as make_fixture.py):

  TORCH_PYTHON experiments/interop/make_original_checkpoint.py \
      --data workdirs/data/kjv/train.npy --save_dir /tmp/orig_smt [--original SMT_CHECKOUT/src]

The data is any .npy of byte tokens (one long sequence, as the original's datasets); train_smt.py
itself needs CUDA and its dataset folders, so its step body is repeated here on CPU, unchanged:
zero_grad, forward_smt, backward, clip_grad_norm_ per module, AdamW.step, util.get_lr.
"""

import argparse
from dataclasses import dataclass, field

import numpy as np

# A sibling file, not experiments.interop: these scripts run under the torch venv.
from original_src import parse_args_with_original


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--data", required=True)
  ap.add_argument("--save_dir", required=True)
  ap.add_argument("--iters", type=int, default=20)
  a = parse_args_with_original(ap)
  import torch
  import util
  from model import RNN, RNNConfig, SMTConfig, Teacher, TeacherConfig, forward_smt

  global Config

  @dataclass
  class Config:  # train_smt.py's Config fields (pickled as __main__.Config, as there).
    seed: int = 0
    dataset: str = "tinystories"
    n_iters: int = a.iters
    log_every: int = a.iters
    ckpt_every: int | None = None
    save_dir: str | None = a.save_dir
    load_rnn_path: str | None = None
    load_teacher_path: str | None = None
    rnn: RNNConfig = field(
      default_factory=lambda: RNNConfig(
        vocab_size=256,
        mem_size=4 * 64,
        mem_tokens=4,
        d_model=64,
        rnn_depth=2,
        decoder_depth=1,
        n_heads=2,
      )
    )
    teacher: TeacherConfig = field(
      default_factory=lambda: TeacherConfig(
        vocab_size=256,
        mem_size=4 * 64,
        mem_tokens=4,
        d_model=64,
        encoder_depth=2,
        decoder_depth=1,
        n_heads=2,
      )
    )
    lr: float = 3e-4
    lr_schedule: str = "warmup_constant"
    weight_decay: float = 1e-2
    adam_betas: tuple = (0.9, 0.95)
    batch_size: int = 16
    grad_accum_steps: int = 1
    clip_grad_norm: float = 1.0
    smt: SMTConfig = field(default_factory=lambda: SMTConfig(T=32 + 16, Tc=32, Tf=16))

  Config.__module__ = "__main__"
  Config.__qualname__ = "Config"
  cfg = Config()
  torch.set_num_threads(1)
  np.random.seed(cfg.seed)
  torch.manual_seed(cfg.seed)
  data = np.load(a.data)
  rnn, teacher = RNN(cfg.rnn), Teacher(cfg.teacher)
  opt = torch.optim.AdamW(
    list(rnn.parameters()) + list(teacher.parameters()),
    lr=cfg.lr,
    weight_decay=cfg.weight_decay,
    betas=cfg.adam_betas,
  )
  logs = []
  for itr in range(cfg.n_iters):
    lr = util.get_lr(itr, cfg.n_iters, cfg.lr, cfg.lr_schedule)
    for group in opt.param_groups:
      group["lr"] = lr
    rnn.train(), teacher.train()
    opt.zero_grad(set_to_none=True)
    idx = np.random.randint(0, len(data) - cfg.smt.T - 1, cfg.batch_size)  # MyDataset.sample_batch
    seq = torch.from_numpy(np.stack([data[i : i + cfg.smt.T + 1] for i in idx])).long()
    o = forward_smt(rnn, teacher, {"x": seq[:, :-1], "y": seq[:, 1:]}, cfg.smt)
    o["loss"].backward()
    torch.nn.utils.clip_grad_norm_(rnn.parameters(), cfg.clip_grad_norm)
    torch.nn.utils.clip_grad_norm_(teacher.parameters(), cfg.clip_grad_norm)
    opt.step()
    logs.append({k: v.item() for k, v in o.items() if v.numel() == 1} | {"itr": itr, "lr": lr})
    print(
      f"itr {itr:3d}  loss {logs[-1]['loss']:.4f}  loss_decoder {logs[-1]['loss_decoder']:.4f}"
      f"  loss_dyn {logs[-1]['loss_dyn']:.4f}",
      flush=True,
    )
  rnn.decoder.load_state_dict(teacher.decoder.state_dict())  # As train_smt.py before saving.
  rnn.to_logits.load_state_dict(teacher.to_logits.state_dict())
  util.save_pkl(cfg.save_dir, "cfg", cfg)
  util.save_pkl(cfg.save_dir, "rnn", rnn)
  util.save_pkl(cfg.save_dir, "teacher", teacher)
  torch.save(
    {
      "cfg": cfg,
      "logs": logs,
      "itr": cfg.n_iters,
      "rnn": rnn.state_dict(),
      "teacher": teacher.state_dict(),
      "opt": opt.state_dict(),
    },
    f"{cfg.save_dir}/checkpoint.pt",
  )
  # The held-out loss the original computes for its own checkpoint, for comparison after import.
  rnn.eval(), teacher.eval()
  rng = np.random.default_rng(1)
  test = np.load(a.data.replace("train.npy", "test.npy"))
  idx = rng.integers(0, len(test) - cfg.smt.T - 1, 64)
  seq = torch.from_numpy(np.stack([test[i : i + cfg.smt.T + 1] for i in idx])).long()
  with torch.no_grad():
    o = forward_smt(rnn, teacher, {"x": seq[:, :-1], "y": seq[:, 1:]}, cfg.smt)
  np.save(f"{cfg.save_dir}/heldout_x.npy", seq.numpy())
  print(
    "heldout forward_smt: "
    + "  ".join(f"{k} {v.item():.6f}" for k, v in o.items() if v.numel() == 1)
  )
  print(f"saved {cfg.save_dir}/checkpoint.pt, rnn.pkl, teacher.pkl, cfg.pkl")


if __name__ == "__main__":
  main()
