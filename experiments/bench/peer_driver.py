"""Times train steps of the PyTorch original (github.com/akarshkumar0101/smt), for side.py.

Runs under a Python that has torch and x-transformers, never under the project's: it imports
nothing of smt_jax, only the original's `src/model.py` from the checkout given by --src. It
reads commands from stdin, one per line, and answers each with one JSON line on stdout:

  time NAME REPS   ->  {"name": NAME, "times_s": [...], "loss": float, ...}   (built and warmed
                       up on first use, so later rounds time the same warm step)
  info             ->  {"torch": version, "threads": n}
  quit

Steps (reference config: d 128, 4 heads, K 4, encoder 4 / decoder 2 / updater 4 / readout 2,
vocab 256, batch 32, Tc 64, Tf 32, float32), each the original's own forward function, then
backward, its per-module gradient-norm clipping and AdamW, as in its training scripts:
  plain_dh32   a causal x-transformers LM, d 128, depth 4, 4 heads of width 32, T 128
  smt_n1       forward_smt, T 128 (one memory label per sequence)
  dmt_32       forward_dmt, Td 32, k 4, the memory detached before every update (gradient
               path 1) and the teacher frozen (requires_grad off): side.py's dmt_32 row
  dmt_32_orig  forward_dmt with the original's defaults (gradients through the whole rollout,
               teacher parameters keep requires_grad): side.py's dmt_32_bp row
  bptt_T64     forward_bptt, T 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

V, D, H, K, B, TC, TF = 256, 128, 4, 4, 32, 64, 32


def build(name: str, src: str, threads: int):
  import torch

  torch.set_num_threads(threads)
  sys.path.insert(0, os.path.join(src, "src"))
  import model as orig  # the original's src/model.py

  def models():
    torch.manual_seed(0)
    rnn = orig.RNN(
      orig.RNNConfig(
        vocab_size=V,
        mem_size=K * D,
        mem_tokens=K,
        d_model=D,
        rnn_depth=4,
        decoder_depth=2,
        n_heads=H,
      )
    )
    teacher = orig.Teacher(
      orig.TeacherConfig(
        vocab_size=V,
        mem_size=K * D,
        mem_tokens=K,
        d_model=D,
        encoder_depth=4,
        decoder_depth=2,
        n_heads=H,
      )
    )
    return rnn.train(), teacher.train()

  def batch(T):
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, V, (B, T + 1), generator=g)
    return {"x": seq[:, :-1].long(), "y": seq[:, 1:].long()}

  def adamw(params):
    return torch.optim.AdamW(params, lr=3e-4, weight_decay=1e-2, betas=(0.9, 0.95))

  def step_fn(forward, params, clip_modules, bt):
    opt = adamw(params)

    def step():
      opt.zero_grad(set_to_none=True)
      out = forward(bt)
      out["loss"].backward()
      for m in clip_modules:
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
      opt.step()
      return float(out["loss"].item())

    return step

  if name == "plain_dh32":
    from x_transformers import Decoder, TransformerWrapper

    torch.manual_seed(0)
    lm = TransformerWrapper(
      num_tokens=V,
      max_seq_len=128,
      use_abs_pos_emb=False,
      attn_layers=Decoder(
        dim=D, depth=4, heads=H, attn_dim_head=32, rotary_pos_emb=True, use_rmsnorm=True
      ),
    ).train()
    bt = batch(128)

    def forward(b):
      logits = lm(b["x"])
      return {"loss": torch.nn.functional.cross_entropy(logits.reshape(-1, V), b["y"].reshape(-1))}

    return step_fn(forward, list(lm.parameters()), [], bt), dict(T=128, batch=B, labels=0)
  rnn, teacher = models()
  if name == "smt_n1":
    cfg = orig.SMTConfig(T=128, Tc=TC, Tf=TF)
    params = list(rnn.parameters()) + list(teacher.parameters())
    forward = lambda b: orig.forward_smt(rnn, teacher, b, cfg)
    return step_fn(forward, params, [rnn, teacher], batch(128)), dict(T=128, batch=B, labels=B)
  if name in ("dmt_32", "dmt_32_orig"):
    like = name == "dmt_32"
    # detach_rnn=False detaches before every update in the original's code (see its forward).
    cfg = orig.DMTConfig(T=TC + 32 + TF, Td=32, Tc=TC, Tf=TF, k=4, detach_rnn=not like)
    if like:
      teacher.requires_grad_(False)
    forward = lambda b: orig.forward_dmt(rnn, teacher, b, cfg)
    bt = batch(cfg.T)
    return step_fn(forward, list(rnn.parameters()), [rnn, teacher], bt), dict(
      T=cfg.T, batch=B, labels=B * (32 // 4)
    )
  if name.startswith("bptt_T"):
    T = int(name[len("bptt_T") :])
    cfg = orig.BPTTConfig(T=T)
    forward = lambda b: orig.forward_bptt(rnn, b, cfg)
    return step_fn(forward, list(rnn.parameters()), [rnn], batch(T)), dict(T=T, batch=B, labels=0)
  raise ValueError(f"unknown step {name!r}")


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--src", required=True, help="checkout of akarshkumar0101/smt (has src/model.py)")
  ap.add_argument("--threads", type=int, default=2)
  ap.add_argument("--warmup", type=int, default=2)
  args = ap.parse_args(argv)
  steps: dict = {}
  for line in sys.stdin:
    cmd = line.split()
    if not cmd:
      continue
    if cmd[0] == "quit":
      break
    if cmd[0] == "info":
      import torch

      out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
      }
    elif cmd[0] == "time":
      name, reps = cmd[1], int(cmd[2])
      if name not in steps:
        t0 = time.perf_counter()
        step, info = build(name, args.src, args.threads)
        for _ in range(args.warmup):
          step()
        steps[name] = (step, dict(info, build_and_warmup_s=time.perf_counter() - t0))
      step, info = steps[name]
      times, loss = [], float("nan")
      for _ in range(reps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
      out = dict(name=name, times_s=times, loss=loss, loadavg=os.getloadavg(), **info)
    else:
      out = {"error": f"unknown command {line.strip()!r}"}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
