"""Synthetic tasks against plain-Python solvers that recompute every label from x alone."""

import collections
import itertools

import jax
import ml_collections
import numpy as np
import pytest
import scipy.stats
from conftest import modular_optimal_guesses

from smt_jax.data import TASK_NAMES, default_data_config, make_dataset
from smt_jax.data.synthetic import has_answer_sources

DRAWS = 64  # sequences per (task, T) case


def solve_retrieval(x, V, **_):
  """Answer at the final marker = the token after the only other marker."""
  mark = V - 1
  assert x[-1] == mark
  marks = [i for i, t in enumerate(x[:-1]) if t == mark]
  assert len(marks) == 1 and marks[0] + 1 < len(x) - 1
  return [-1] * (len(x) - 1) + [x[marks[0] + 1]]


def solve_copy(x, V, reverse=False, **_):
  sep, pad = V - 1, V - 2
  L = x.index(sep)
  target = x[:L][::-1] if reverse else x[:L]
  assert x[L + 1 : 2 * L] == target[:-1] and all(t == pad for t in x[2 * L :])
  assert all(t < V - 2 for t in x[:L])
  return [-1] * L + target + [-1] * (len(x) - 2 * L)


def solve_stack(x, V, depth=8, **_):
  stack, y = [], []
  for t in x:
    if t == V - 1:
      assert stack, "pop from an empty stack"
      y.append(stack.pop())
    else:
      stack.append(t)
      assert len(stack) <= depth, "depth bound exceeded"
      y.append(-1)
  return y


def solve_keys_values(x, V, key_len=2, value_len=2, disjoint=False, **_):
  """The query (``<query> key``, or the bare key when disjoint) ends where padding begins."""
  query, pad, pair, mark = V - 1, V - 2, key_len + value_len, 0 if disjoint else 1
  end = x.index(pad) if pad in x else len(x)  # after the query's value (its last token unread)
  q = end - pair + 1 - mark
  assert q % pair == 0 and x.count(query) == mark and x[q : q + mark] == [query] * mark
  chunks = [tuple(x[i : i + pair]) for i in range(0, q, pair)]
  table = {c[:key_len]: list(c[key_len:]) for c in chunks}
  assert len(table) == len(chunks), "keys must be distinct"
  key = tuple(x[q + mark : q + mark + key_len])
  value = table[key]
  assert x[q + mark + key_len : end] == value[:-1] and all(t == pad for t in x[end:])
  if disjoint:  # keys from the lower ceil((V - 2) / 2) symbols, values from the rest
    half = (V - 1) // 2
    assert all(t < half for k in [*table, key] for t in k)
    assert all(half <= t < V - 2 for v in table.values() for t in v)
  return [-1] * (q + mark + key_len - 1) + value + [-1] * (len(x) - end)


def solve_modular(x, V, warmup_pairs=2, coef_frac=1.0, **_):
  """Brute force over every (w, b), both below coef_frac * V, consistent with the pairs."""
  pairs = [(x[i], x[i + 1]) for i in range(0, len(x) - 1, 2)]
  C = int(coef_frac * V)
  maps = [
    (w, b) for w in range(1, C) for b in range(C) if all((w * u + b) % V == f for u, f in pairs)
  ]
  assert maps, "no affine map explains the pairs"
  y = []
  for t, u in enumerate(x):
    answers = {(w * u + b) % V for w, b in maps}
    assert len(answers) == 1
    y.append(answers.pop() if t % 2 == 0 and t >= 2 * warmup_pairs else -1)
  return y


def solve_parity(x, V, final_only=False, **_):
  y, acc = [], 0
  for t in x:
    assert t in (0, 1)
    acc ^= t
    y.append(acc)
  return [-1] * (len(x) - 1) + y[-1:] if final_only else y


def solve_recency(x, V, lag=4, final_only=False, **_):
  y = [x[t - lag] if t >= lag else -1 for t in range(len(x))]
  return [-1] * (len(x) - 1) + y[-1:] if final_only else y


def solve_primacy(x, V, final_only=False, **_):
  y = [-1] + [x[0]] * (len(x) - 1)
  return [-1] * (len(x) - 1) + y[-1:] if final_only else y


SOLVERS = {
  "retrieval": solve_retrieval,
  "copy": solve_copy,
  "stack": solve_stack,
  "keys_values": solve_keys_values,
  "modular": solve_modular,
  "parity": solve_parity,
  "recency": solve_recency,
  "primacy": solve_primacy,
}

# (name, vocab_size, kwargs, lengths): defaults plus the knobs the paper sweeps; the lengths mix
# odd / even, padded / filled episodes and longer T (length generalisation).
CASES = [
  ("retrieval", 16, {}, (33,)),
  ("retrieval", 5, {"pos_lo": 0.5, "pos_hi": 1.0}, (3, 40)),
  ("copy", 16, {}, (9, 32)),
  ("copy", 5, {"length": 5, "reverse": True}, (23,)),
  ("stack", 16, {}, (40,)),
  ("stack", 4, {"depth": 2, "p_push": 0.8}, (41,)),
  ("keys_values", 16, {}, (50,)),
  ("keys_values", 5, {"n_pairs": 0, "key_len": 3, "value_len": 1}, (41,)),
  ("keys_values", 6, {"n_pairs": 4, "key_len": 1, "value_len": 3}, (20,)),
  ("keys_values", 9, {"disjoint": True}, (35, 38)),
  ("keys_values", 6, {"n_pairs": 0, "key_len": 3, "value_len": 1, "disjoint": True}, (19, 22)),
  ("modular", 7, {}, (21,)),
  ("modular", 11, {"warmup_pairs": 0}, (40,)),
  ("modular", 17, {"coef_frac": 0.2, "warmup_pairs": 0}, (40,)),
  ("parity", 2, {}, (31,)),
  ("parity", 5, {"final_only": True}, (12,)),
  ("recency", 16, {}, (30,)),
  ("recency", 3, {"lag": 0, "final_only": True}, (9,)),
  ("primacy", 16, {}, (30,)),
  ("primacy", 4, {"final_only": True}, (17,)),
]


def cheap_key(seed):
  """Labels do not depend on the PRNG; this key type halves XLA compile time on CPU."""
  return jax.random.key(seed, impl="unsafe_rbg")


def draw(name, vocab, T, **kwargs):
  """x, y as int lists of DRAWS sequences (same arguments -> compiled sampler reused)."""
  batch = make_dataset(data_config(name, vocab, **kwargs)).sample(cheap_key(T), DRAWS, T)
  return np.asarray(batch["x"]).tolist(), np.asarray(batch["y"]).tolist()


def data_config(name, vocab_size, **kwargs):
  return ml_collections.ConfigDict(
    {
      "name": name,
      "vocab_size": vocab_size,
      "path": "",
      "kwargs": ml_collections.ConfigDict(kwargs),
    }
  )


@pytest.mark.parametrize("name,vocab,kwargs,lengths", CASES, ids=lambda c: str(c))
def test_labels_match_solver(name, vocab, kwargs, lengths):
  ds = make_dataset(data_config(name, vocab, **kwargs))
  assert ds.vocab_size == vocab and ds.jittable
  for T in lengths:
    batch = ds.sample(cheap_key(T), DRAWS, T)
    for k in ("x", "y"):
      assert batch[k].shape == (DRAWS, T) and batch[k].dtype == np.int32
    x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
    assert x.min() >= 0 and x.max() < vocab and y.max() < vocab and y.min() >= -1
    for xs, ys in zip(x.tolist(), y.tolist()):
      assert ys == SOLVERS[name](xs, vocab, **kwargs), (name, T, xs)


def test_every_synthetic_task_has_a_solver_and_a_case():
  synthetic = {n for n in TASK_NAMES if default_data_config(n).vocab_size != 256}
  assert synthetic == set(SOLVERS) == {c[0] for c in CASES}


def test_retrieval_needle_covers_the_first_half():
  T, slots = 33, 31
  x, _ = draw("retrieval", 16, T)
  pos = [row.index(15) for row in x]
  assert 0 <= min(pos) <= 2 and slots / 2 - 3 <= max(pos) < slots / 2 + 1


def test_retrieval_needle_range_knob():
  T, slots = 40, 38
  x, _ = draw("retrieval", 5, T, pos_lo=0.5, pos_hi=1.0)
  pos = [row.index(4) for row in x]
  assert slots / 2 - 1 < min(pos) <= slots / 2 + 2 and max(pos) >= slots - 3


def test_modular_coef_frac_draws_every_small_coefficient():
  """w in 1..C-1 and b in 0..C-1, C = int(0.2 * 31) = 6, each recovered from two pairs."""
  V, n = 31, 512
  ds = make_dataset(data_config("modular", V, coef_frac=0.2, warmup_pairs=0))
  ws, bs = set(), set()
  for row in np.asarray(ds.sample(cheap_key(3), n, 40)["x"]).tolist():
    (u0, f0), (u1, f1) = next(
      (p, q) for p, q in itertools.combinations(zip(row[::2], row[1::2]), 2) if p[0] != q[0]
    )
    w = (f1 - f0) * pow(u1 - u0, -1, V) % V
    b = (f0 - w * u0) % V
    assert all((w * u + b) % V == f for u, f in zip(row[::2], row[1::2]))
    ws.add(w)
    bs.add(b)
  assert ws == set(range(1, 6)) and bs == set(range(6)) and max(ws | bs) < 0.2 * V


@pytest.mark.parametrize("name,kwargs", [("recency", {"lag": 2}), ("primacy", {})])
def test_geometric_sources_follow_the_truncated_geometric_law(name, kwargs):
  """Distinct tokens make each label's source findable by a scan; its offset j from the
  favoured end (t - lag for recency, 0 for primacy) must have P(j) ~ gamma**j on the range."""
  gamma, V, N, T = 0.7, 2**20, 4000, 12
  lag = kwargs.get("lag", 0)
  first = lag if name == "recency" else 1
  batch = make_dataset(data_config(name, V, gamma=gamma, **kwargs)).sample(cheap_key(7), N, T)
  offsets = collections.defaultdict(list)
  for xs, ys in zip(np.asarray(batch["x"]).tolist(), np.asarray(batch["y"]).tolist()):
    if len(set(xs)) < T:
      continue  # a repeated token would make the source ambiguous
    assert ys[:first] == [-1] * first
    for t in range(first, T):
      i = xs.index(ys[t])
      offsets[t].append(t - lag - i if name == "recency" else i)
  stat, dof = 0.0, 0
  for t, js in offsets.items():
    n = t - lag + 1 if name == "recency" else t + 1
    assert 0 <= min(js) and max(js) < n, "source outside the admissible range"
    pmf = gamma ** np.arange(n) / sum(gamma**j for j in range(n))
    expected = len(js) * pmf
    stat += ((np.bincount(js, minlength=n) - expected) ** 2 / expected).sum()
    dof += n - 1
  assert len(offsets) == T - first and scipy.stats.chi2.sf(stat, dof) > 1e-3, (stat, dof)


def test_stack_reaches_its_depth_and_empties():
  x, _ = draw("stack", 4, 41, depth=2, p_push=0.8)
  depths = [list(itertools.accumulate(-1 if t == 3 else 1 for t in row)) for row in x]
  assert max(map(max, depths)) == 2 and min(map(min, depths)) == 0


def test_sampling_is_a_pure_function_of_the_key():
  ds = make_dataset(data_config("parity", 2))
  a, b = ds.sample(jax.random.key(5), 8, 20), ds.sample(jax.random.key(5), 8, 20)
  np.testing.assert_array_equal(a["x"], b["x"])
  assert not np.array_equal(a["x"], ds.sample(jax.random.key(6), 8, 20)["x"])
  assert ds.sample(jax.random.PRNGKey(5), 8, 20)["x"].shape == (8, 20)  # raw uint32 keys work too
  jitted = jax.jit(ds.sample, static_argnums=(1, 2))  # the trainer may jit it
  np.testing.assert_array_equal(jitted(jax.random.key(5), 8, 20)["x"], a["x"])


def test_test_split_differs_from_train_for_one_key():
  key = cheap_key(31)
  train, test = (
    make_dataset(data_config("parity", 2), s).sample(key, DRAWS, 31)["x"] for s in ("train", "test")
  )
  assert not np.array_equal(train, test)


def test_decode_names_specials():
  ds = make_dataset(data_config("copy", 6, length=2))
  assert ds.decode(np.array([0, 3, 5, 0, 4])) == "0 3 <sep> 0 <pad>"
  assert ds.decode(np.array([[1, 5], [2, 5]])) == ["1 <sep>", "2 <sep>"]
  assert ds.decode(np.array([-1, -1, 3])) == "_ _ 3"  # labels
  for bad in (6, -2):
    with pytest.raises(ValueError, match=f"token {bad} outside"):
      ds.decode(np.array([bad]))


def test_default_configs_build_every_synthetic_task():
  for name in SOLVERS:
    cfg = default_data_config(name)
    ds = make_dataset(cfg)
    assert ds.vocab_size == cfg.vocab_size and set(cfg.kwargs) == {
      k for k in vars(ds) if k not in ("vocab_size", "split_salt")
    }


@pytest.mark.parametrize(
  "name,vocab,kwargs,match",
  [
    ("nope", 8, {}, r"data\.name='nope' is unknown; valid names: retrieval, copy"),
    ("copy", 8, {"lenght": 3}, r"data\.kwargs\.lenght is not a knob of task 'copy'"),
    ("copy", 8, {"length": 2.5}, r"data\.kwargs\.length=2\.5: expected int"),
    ("copy", 8, {"reverse": 1}, r"data\.kwargs\.reverse=1: expected bool"),
    ("copy", 8, {"length": -1}, r"data\.kwargs\.length=-1"),
    ("copy", 2, {}, r"data\.vocab_size=2: task 'copy' needs at least 4"),
    ("retrieval", 8, {"pos_lo": 0.6, "pos_hi": 0.5}, r"data\.kwargs\.pos_hi=0\.5"),
    ("retrieval", 8, {"pos_lo": -0.1}, r"data\.kwargs\.pos_lo=-0\.1"),
    ("stack", 8, {"depth": 0}, r"data\.kwargs\.depth=0"),
    ("stack", 8, {"p_push": 1.0}, r"data\.kwargs\.p_push=1\.0"),
    (
      "keys_values",
      4,
      {"n_pairs": 5, "key_len": 1},
      r"data\.kwargs\.n_pairs=5 but only 2\*\*1 distinct keys",
    ),
    ("keys_values", 8, {"value_len": 0}, r"data\.kwargs\.value_len=0"),
    ("keys_values", 8, {"disjoint": 1}, r"data\.kwargs\.disjoint=1: expected bool"),
    (
      "keys_values",
      6,
      {"n_pairs": 3, "key_len": 1, "disjoint": True},
      r"data\.kwargs\.n_pairs=3 but only 2\*\*1 distinct keys",
    ),
    ("modular", 50000, {}, r"data\.vocab_size=50000"),
    ("modular", 7, {"warmup_pairs": -1}, r"data\.kwargs\.warmup_pairs=-1"),
    ("modular", 17, {"coef_frac": 0.0}, r"data\.kwargs\.coef_frac=0\.0: must lie in \(0, 1\]"),
    ("modular", 17, {"coef_frac": 1.5}, r"data\.kwargs\.coef_frac=1\.5: must lie in \(0, 1\]"),
    (
      "modular",
      7,
      {"coef_frac": 0.2},
      r"data\.kwargs\.coef_frac=0\.2: .*int\(coef_frac \* 7\) >= 2",
    ),
    ("modular", 7, {"coef_frac": "0.2"}, r"data\.kwargs\.coef_frac='0\.2': expected float"),
    ("recency", 8, {"lag": -2}, r"data\.kwargs\.lag=-2"),
    ("recency", 8, {"gamma": 1.0}, r"data\.kwargs\.gamma=1\.0: must lie in \[0, 1\)"),
    ("primacy", 8, {"gamma": -0.5}, r"data\.kwargs\.gamma=-0\.5: must lie in \[0, 1\)"),
    ("parity", 1, {}, r"data\.vocab_size=1"),
  ],
)
def test_config_errors_name_the_field(name, vocab, kwargs, match):
  with pytest.raises(ValueError, match=match):
    make_dataset(data_config(name, vocab, **kwargs))


def test_bad_split_is_rejected():
  with pytest.raises(ValueError, match="split='valid'"):
    make_dataset(data_config("parity", 2), split="valid")


@pytest.mark.parametrize(
  "name,kwargs,T,need",
  [
    ("retrieval", {}, 2, 3),
    ("copy", {"length": 5}, 9, 10),
    ("keys_values", {}, 35, 36),
    ("keys_values", {"n_pairs": 3, "key_len": 1}, 11, 12),
    ("keys_values", {"disjoint": True}, 34, 35),
    ("modular", {"warmup_pairs": 3}, 6, 7),
    ("recency", {"lag": 6}, 6, 7),
    ("primacy", {}, 1, 2),
  ],
)
def test_too_short_T_is_rejected(name, kwargs, T, need):
  ds = make_dataset(data_config(name, 8, **kwargs))
  with pytest.raises(ValueError, match=rf"T={T} is too short for task '{name}'.*needs T >= {need}"):
    ds.sample(jax.random.key(0), 2, T)


def test_keys_values_filling_T_needs_enough_distinct_keys():
  ds = make_dataset(data_config("keys_values", 8, n_pairs=0, key_len=1, value_len=1))
  with pytest.raises(
    ValueError, match=r"T=21 fits 9 pairs \(data\.kwargs\.n_pairs=0\) but only 6\*\*1"
  ):
    ds.sample(jax.random.key(0), 2, 21)


# The variants study 9 sweeps, and every other task, at T = 256: (name, vocab_size, kwargs).
AT_LENGTH = [
  ("retrieval", 8, {"pos_lo": 0.4, "pos_hi": 0.5}),
  ("copy", 8, {"reverse": True}),
  ("stack", 6, {"depth": 64}),
  ("keys_values", 16, {"n_pairs": 16}),
  ("keys_values", 16, {"n_pairs": 16, "disjoint": True}),
  ("modular", 17, {"coef_frac": 0.2, "warmup_pairs": 0}),
  ("parity", 2, {}),
  ("recency", 8, {}),
  ("primacy", 8, {}),
]


@pytest.mark.parametrize("name,vocab,kwargs", AT_LENGTH, ids=lambda c: str(c))
def test_generators_at_T256_match_their_definition(name, vocab, kwargs):
  """A few sequences of length 256 against the plain-Python solver of the task's definition
  (labels, their positions, the disjoint key / value vocabularies)."""
  T, draws = 256, 4
  batch = make_dataset(data_config(name, vocab, **kwargs)).sample(cheap_key(7), draws, T)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  assert x.shape == y.shape == (draws, T)
  for xs, ys in zip(x.tolist(), y.tolist()):
    assert ys == SOLVERS[name](xs, vocab, **kwargs), (name, xs)
  if name == "copy":  # Fills the sequence: T / 2 symbols, the separator, the reversed copy.
    assert all(xs.index(vocab - 1) == T // 2 for xs in x.tolist())
  if name == "retrieval":  # The needle marker in [0.4, 0.5) of the 254 marker slots.
    assert all(101 <= xs.index(vocab - 1) < 127 for xs in x.tolist())


def stack_sources(x, V, **_):
  """The push each pop undoes, by a Python list of push positions."""
  pushed, out = [], []
  for t, token in enumerate(x):
    if token == V - 1:
      out.append(pushed.pop())
    else:
      pushed.append(t)
      out.append(-1)
  return out


def copy_sources(x, V, reverse=False, **_):
  """Answer i after the separator repeats the string's symbol L - 1 - i (reversed) or i."""
  L = x.index(V - 1)
  return [-1] * L + [L - 1 - i if reverse else i for i in range(L)] + [-1] * (len(x) - 2 * L)


def keys_values_sources(x, V, key_len=2, value_len=2, disjoint=False, **_):
  """The queried value's tokens repeat those of the pair whose key matches the query's, found
  by comparing the query key with every pair's (labels as solve_keys_values places them)."""
  labels = solve_keys_values(x, V, key_len, value_len, disjoint)
  first = labels.index(next(a for a in labels if a >= 0))
  pair, query_key = key_len + value_len, x[first - key_len + 1 : first + 1]
  match = next(j for j in range(0, first, pair) if x[j : j + key_len] == query_key)
  out = [-1] * len(x)
  for i in range(value_len):
    out[first + i] = match + key_len + i
  return out


@pytest.mark.parametrize(
  "name, vocab, kwargs, solve",
  [
    ("stack", 6, {"depth": 64, "p_push": 0.5}, stack_sources),
    ("copy", 8, {"reverse": True}, copy_sources),
    ("copy", 8, {}, copy_sources),
    ("keys_values", 18, {"n_pairs": 0}, keys_values_sources),
    ("keys_values", 18, {"n_pairs": 0, "disjoint": True}, keys_values_sources),
    ("keys_values", 6, {"n_pairs": 0, "key_len": 3, "value_len": 1}, keys_values_sources),
  ],
)
def test_answer_sources_at_T_256_match_python_and_hold_the_answer(name, vocab, kwargs, solve):
  """Each labelled position's source (the token its answer repeats), at T = 256 against a
  Python reference; the token there is the answer; -1 wherever there is no label."""
  xs, ys = draw(name, vocab, 256, **kwargs)
  task = make_dataset(data_config(name, vocab, **kwargs))
  sources = np.asarray(jax.vmap(task.answer_sources)(np.asarray(xs), np.asarray(ys))).tolist()
  for x, y, src in zip(xs, ys, sources):
    assert src == solve(x, vocab, **kwargs)
    assert all((s >= 0) == (a >= 0) for s, a in zip(src, y))
    assert all(x[s] == a for s, a in zip(src, y) if s >= 0)


@pytest.mark.parametrize("name,vocab,kwargs", AT_LENGTH, ids=lambda c: str(c))
def test_tasks_name_sources_exactly_where_has_answer_sources_says(name, vocab, kwargs):
  """A task either names a source for some answer of a sample or, where has_answer_sources says
  it has none, for no position at all."""
  task = make_dataset(data_config(name, vocab, **kwargs))
  batch = task.sample(cheap_key(0), 2, max(64, task.min_length()))
  sources = np.asarray(jax.vmap(task.answer_sources)(batch["x"], batch["y"]))
  assert (sources >= 0).any() == has_answer_sources(name)


def recency_optimal_guesses(x, y, V, lag, gamma, **_):
  """The Bayes-optimal guesses of recency with a drawn source: the token of largest total weight
  gamma**j over the sources x[t - lag - j], j = 0 .. t - lag, the lowest token winning a tie;
  sure where every source holds one token."""
  out = {"hit": [], "sure": []}
  for t in range(len(x)):
    score = collections.Counter()
    for j in range(t - lag + 1):
      score[x[t - lag - j]] += gamma**j
    best = min(score, key=lambda v: (-score[v], v)) if score else None
    out["hit"].append(y[t] >= 0 and best == y[t])
    out["sure"].append(y[t] >= 0 and len(score) == 1)
  return out


@pytest.mark.parametrize(
  "name, vocab, kwargs, T, solve",
  [
    ("modular", 17, {"coef_frac": 0.2, "warmup_pairs": 0}, 64, modular_optimal_guesses),
    ("modular", 11, {"coef_frac": 0.5, "warmup_pairs": 2}, 33, modular_optimal_guesses),
    ("recency", 4, {"lag": 2, "gamma": 0.5}, 24, recency_optimal_guesses),
  ],
)
def test_optimal_guesses_match_a_python_bayes_rule(name, vocab, kwargs, T, solve):
  """The task's Bayes-optimal guesses, and where the past determines the answer, against a
  Python loop over its definition; the ceiling (the share of right guesses) lies strictly
  between chance and 1 for these drawn-answer tasks, and sure guesses are right."""
  task = make_dataset(data_config(name, vocab, **kwargs))
  batch = task.sample(cheap_key(5), 64, T)
  got = jax.vmap(task.optimal_guesses)(batch["x"], batch["y"])
  x, y = np.asarray(batch["x"]).tolist(), np.asarray(batch["y"]).tolist()
  want = [solve(xs, ys, vocab, **kwargs) for xs, ys in zip(x, y)]
  for key in ("hit", "sure"):
    assert np.asarray(got[key]).tolist() == [w[key] for w in want], key
  assert not (np.asarray(got["sure"]) & ~np.asarray(got["hit"])).any()
  assert 0 < np.asarray(got["sure"]).sum() < (np.asarray(y) >= 0).sum()
  got = np.asarray(got["hit"])
  ceiling = got.sum() / (np.asarray(y) >= 0).sum()
  assert 1 / vocab < ceiling < 1


@pytest.mark.parametrize("recent_pairs", [0, 1, 2])
def test_modular_guesses_from_the_last_pairs_match_a_python_bayes_rule(recent_pairs):
  """The Bayes guesses of a predictor that sees only the last `recent_pairs` pairs, against the
  Python loop; no more right than those that see every pair, and 0 pairs is the prior's guess."""
  kwargs = {"coef_frac": 0.5, "warmup_pairs": 0}
  task = make_dataset(data_config("modular", 11, **kwargs))
  batch = task.sample(cheap_key(6), 32, 33)
  guesses = jax.vmap(lambda x, y: task.optimal_guesses(x, y, recent_pairs))
  got = guesses(batch["x"], batch["y"])
  x, y = np.asarray(batch["x"]).tolist(), np.asarray(batch["y"]).tolist()
  want = [
    modular_optimal_guesses(xs, ys, 11, **kwargs, recent_pairs=recent_pairs) for xs, ys in zip(x, y)
  ]
  for key in ("hit", "sure"):
    assert np.asarray(got[key]).tolist() == [w[key] for w in want], key
  every = jax.vmap(task.optimal_guesses)(batch["x"], batch["y"])["hit"].sum()
  assert got["hit"].sum() <= every


def python_stack_slots(x, pop, depth):
  """(symbols, ages) per position, top first, padded with -1, by a Python list of the pushes."""
  stack, symbols, ages = [], [], []
  for t, token in enumerate(x):
    if token == pop:
      stack.pop()
    else:
      stack.append((token, t))
    top_first = stack[::-1] + [(-1, None)] * (depth - len(stack))
    symbols.append([s for s, _ in top_first])
    ages.append([-1 if p is None else t - p for _, p in top_first])
  return symbols, ages


def test_stack_slots_at_T_256_match_a_python_stack():
  """Stack.stack_slots (what the state probe reads) against a Python list of the pushes."""
  depth = 64
  xs, _ = draw("stack", 6, 256, depth=depth, p_push=0.5)
  task = make_dataset(data_config("stack", 6, depth=depth, p_push=0.5))
  symbols, ages = jax.vmap(task.stack_slots)(jax.numpy.asarray(xs))
  assert symbols.shape == ages.shape == (len(xs), 256, depth)
  for x, s, a in zip(xs, np.asarray(symbols).tolist(), np.asarray(ages).tolist()):
    assert (s, a) == python_stack_slots(x, 5, depth)
  assert max(max(max(r) for r in seq) for seq in np.asarray(ages).tolist()) > 32  # Deep ones.
