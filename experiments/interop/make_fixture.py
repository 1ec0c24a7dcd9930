"""Writes an equivalence fixture from the PyTorch original (akarshkumar0101/smt, src/model.py).

Run with a separate Python that has torch, x-transformers and einops (the project itself never
imports torch), and the original's src/ folder (default: ../shared/peer/smt-original/src beside
this checkout):

  TORCH_PYTHON experiments/interop/make_fixture.py --size tiny \
      --out tests/fixtures/original_tiny.npz [--original SMT_CHECKOUT/src]

It builds the original's Teacher and RNN with a fixed seed, perturbs every parameter a little
(so that an RMSNorm gain or a bias mapped to the wrong place shows), and saves into one .npz:
  w/teacher/NAME, w/rnn/NAME   every tensor of the two state_dicts (float16 where exact: the
                               tiny fixture's weights are rounded to float16 values first);
  config                       the sizes as JSON;
  batch/{smt,dmt,bptt,enc}_{x,y}  the token batches used below;
  out/...                      the original's outputs: teacher memories (with padding), decoder
                               and readout logits, one RNN update, forward_smt's loss terms and
                               memories, forward_dmt's for detach_rnn True and False,
                               forward_bptt's loss and logits, and losses after two optimizer
                               steps of train_smt.py's update (per-module clipping, AdamW);
  grads, grad_names            (L2 norm, sum) of each parameter's gradient of a loss, one row
                               per "grad/CASE/{teacher,rnn}/NAME".
"""

import argparse
import json
import os

import numpy as np

# A sibling file, not experiments.interop: these scripts run under the torch venv.
from original_src import parse_args_with_original

SIZES = {
  # V odd and d != dim_head so that a transposed or mis-split tensor cannot go unnoticed.
  "tiny": dict(
    V=11, d=8, H=2, K=2, enc=1, dec=1, rnn=1, readout=1, B=3, Tc=5, Tf=3, Td=4, k=2, T_bptt=6
  ),
  "reference": dict(
    V=256, d=128, H=4, K=4, enc=4, dec=2, rnn=4, readout=2, B=8, Tc=64, Tf=32, Td=32, k=4, T_bptt=32
  ),
}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", choices=tuple(SIZES), default="tiny")
  ap.add_argument("--out", required=True)
  ap.add_argument("--seed", type=int, default=0)
  a = parse_args_with_original(ap)
  import torch
  from model import (
    RNN,
    BPTTConfig,
    DMTConfig,
    RNNConfig,
    SMTConfig,
    Teacher,
    TeacherConfig,
    forward_bptt,
    forward_dmt,
    forward_smt,
  )

  torch.set_num_threads(1)
  s = SIZES[a.size]
  V, d, H, K, B = s["V"], s["d"], s["H"], s["K"], s["B"]
  Tc, Tf, Td, k = s["Tc"], s["Tf"], s["Td"], s["k"]
  torch.manual_seed(a.seed)
  teacher = Teacher(
    TeacherConfig(
      vocab_size=V,
      mem_size=K * d,
      mem_tokens=K,
      d_model=d,
      encoder_depth=s["enc"],
      decoder_depth=s["dec"],
      n_heads=H,
    )
  )
  rnn = RNN(
    RNNConfig(
      vocab_size=V,
      mem_size=K * d,
      mem_tokens=K,
      d_model=d,
      rnn_depth=s["rnn"],
      decoder_depth=s["readout"],
      n_heads=H,
    )
  )
  with torch.no_grad():  # Perturb: norm gains start at 0 (unit offset), biases near 0.
    for module in (teacher, rnn):
      for p in module.parameters():
        p.add_(0.05 * torch.randn_like(p))
        p.copy_(p.half().float())  # float16-exact, so the file can store float16 losslessly.
  teacher.train(), rnn.train()  # No dropout in these models; train() as the scripts run them.

  out, grads = {}, {}
  g = torch.Generator().manual_seed(a.seed + 1)

  def tokens(T):
    seq = torch.randint(0, V, (B, T + 1), generator=g)
    return seq[:, :-1].long(), seq[:, 1:].long()

  batches = {"smt": tokens(Tc + Tf), "dmt": tokens(Tc + Td + Tf), "bptt": tokens(s["T_bptt"])}
  enc_x = torch.randint(0, V, (B, Tc), generator=g)
  enc_x[0, :2] = -1  # Left padding, as windows near a sequence's start.
  batches["enc"] = (enc_x, enc_x)

  def record_grads(case, loss, modules):
    for name, module in modules.items():
      for p in module.parameters():
        p.grad = None
    loss.backward()
    for name, module in modules.items():
      for pname, p in module.named_parameters():
        gr = p.grad if p.grad is not None else torch.zeros_like(p)
        grads[f"grad/{case}/{name}/{pname}"] = np.array(
          [gr.double().norm().item(), gr.double().sum().item()]
        )

  def keep(prefix, o):
    for key, v in o.items():
      if torch.is_tensor(v) and v.is_floating_point():
        out[f"out/{prefix}/{key}"] = v.detach().numpy()

  # Teacher and RNN pieces.
  with torch.no_grad():
    m = teacher.encode(enc_x)
    x_fut = batches["smt"][0][:, :Tf]
    out["out/teacher/memory"] = m.numpy()
    out["out/teacher/decode_logits"] = teacher.decode(m, x_fut).numpy()
    out["out/teacher/readout_logits"] = teacher.teacher_readout(m).numpy()
    out["out/rnn/update"] = rnn.rnn_update(m, x_fut[:, [0]]).numpy()
    out["out/rnn/readout_logits"] = rnn.rnn_readout(m).numpy()
    out["batch/dec_x"] = x_fut.numpy()

  both = {"teacher": teacher, "rnn": rnn}
  o = forward_smt(
    rnn,
    teacher,
    {"x": batches["smt"][0], "y": batches["smt"][1]},
    SMTConfig(T=Tc + Tf, Tc=Tc, Tf=Tf),
  )
  keep("smt", o)
  record_grads("smt", o["loss"], both)
  for detach in (True, False):
    o = forward_dmt(
      rnn,
      teacher,
      {"x": batches["dmt"][0], "y": batches["dmt"][1]},
      DMTConfig(T=Tc + Td + Tf, Td=Td, Tc=Tc, Tf=Tf, k=k, detach_rnn=detach),
    )
    keep(f"dmt_detach_rnn_{detach}", o)
    record_grads(f"dmt_detach_rnn_{detach}", o["loss"], {"rnn": rnn})
  o = forward_bptt(
    rnn, {"x": batches["bptt"][0], "y": batches["bptt"][1]}, BPTTConfig(T=s["T_bptt"])
  )
  keep("bptt", o)
  record_grads("bptt", o["loss"], {"rnn": rnn})

  weights = {}
  for name, module in both.items():
    for key, v in module.state_dict().items():
      v = v.detach().numpy()
      exact = a.size == "tiny" and np.array_equal(v.astype(np.float16).astype(v.dtype), v)
      weights[f"w/{name}/{key}"] = v.astype(np.float16 if exact else np.float32)

  # Two updates of train_smt.py's step (constant lr, clipping per module), same batch each time.
  opt_cfg = dict(lr=1e-2, weight_decay=1.0, betas=(0.9, 0.95), clip=0.5)  # Large decay: decaying
  # biases and norm gains, or not, must show.
  opt = torch.optim.AdamW(
    list(rnn.parameters()) + list(teacher.parameters()),
    lr=opt_cfg["lr"],
    weight_decay=opt_cfg["weight_decay"],
    betas=opt_cfg["betas"],
  )
  losses = []
  smt_batch = {"x": batches["smt"][0], "y": batches["smt"][1]}
  for _ in range(3):
    opt.zero_grad(set_to_none=True)
    o = forward_smt(rnn, teacher, smt_batch, SMTConfig(T=Tc + Tf, Tc=Tc, Tf=Tf))
    losses.append(o["loss"].item())
    o["loss"].backward()
    torch.nn.utils.clip_grad_norm_(rnn.parameters(), opt_cfg["clip"])
    torch.nn.utils.clip_grad_norm_(teacher.parameters(), opt_cfg["clip"])
    opt.step()
  out["out/train_smt/losses"] = np.array(losses[:3])

  config = dict(s, seed=a.seed, size=a.size, optimizer=opt_cfg, torch=torch.__version__)
  for name, (x, y) in batches.items():
    out[f"batch/{name}_x"], out[f"batch/{name}_y"] = x.numpy(), y.numpy()
  names = sorted(grads)  # One array, not one zip entry per tensor: keeps the file small.
  np.savez_compressed(
    a.out,
    config=json.dumps(config),
    grad_names=json.dumps(names),
    grads=np.stack([grads[n] for n in names]),
    **weights,
    **out,
  )
  print(
    f"wrote {a.out}: {len(weights)} tensors, {len(out)} outputs, {len(grads)} gradients, "
    f"{os.path.getsize(a.out) / 1024:.1f} KiB"
  )


if __name__ == "__main__":
  main()
