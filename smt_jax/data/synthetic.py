"""Synthetic probe tasks: pure, jit-able JAX generators.

Every task is a frozen dataclass whose fields are its knobs (``vocab_size`` plus the
``data.kwargs`` fields documented on each class). ``task.sample(key, batch_size, T)`` returns
``{"x": int32[B, T], "y": int32[B, T]}``: the memory after reading ``x[:, t]`` must predict
``y[:, t]``, and ``y == -1`` marks positions without a loss. ``B`` and ``T`` are Python ints
(static under ``jax.jit``); any ``T`` that fits the knobs works, so length-generalisation
evaluations simply call ``sample`` with a larger ``T``.

Special tokens (markers, separators, padding) take the top of the vocabulary: the first name in
``special_names`` is token ``vocab_size - 1``, the next ``vocab_size - 2``, and so on. Content
symbols are ``0 .. n_symbols - 1``.
"""

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

MAX_DISTINCT_KEYS = 2**30  # keys-values draws keys from the first 2**30 key strings (int32-safe)


def _require(ok: bool, field: str, value, why: str) -> None:
  """Raises a ValueError naming the config field ``field`` when ``ok`` is false."""
  if not ok:
    name = "data.vocab_size" if field == "vocab_size" else f"data.kwargs.{field}"
    raise ValueError(f"{name}={value!r}: {why}")


def _final_only(y: jax.Array, final_only: bool) -> jax.Array:
  """Keeps only the last label of ``y[T]`` when ``final_only``."""
  if not final_only:
    return y
  return jnp.full_like(y, -1).at[-1].set(y[-1])


def _fill(n: int, value: int) -> jax.Array:
  return jnp.full((n,), value, jnp.int32)


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
  """Base class: batching, length checks, decoding. Subclasses define ``example``."""

  vocab_size: int
  split_salt: int = dataclasses.field(default=0, kw_only=True, repr=False)

  name: ClassVar[str]
  default_vocab: ClassVar[int] = 16
  special_names: ClassVar[tuple[str, ...]] = ()
  min_symbols: ClassVar[int] = 2
  jittable: ClassVar[bool] = True

  def __post_init__(self):
    need = len(self.special_names) + self.min_symbols
    _require(
      isinstance(self.vocab_size, int) and self.vocab_size >= need,
      "vocab_size",
      self.vocab_size,
      f"task {self.name!r} needs at least {need} tokens "
      f"({self.min_symbols} symbols + specials {list(self.special_names)})",
    )

  @property
  def n_symbols(self) -> int:
    """Number of content symbols, ``0 .. n_symbols - 1``."""
    return self.vocab_size - len(self.special_names)

  def special(self, name: str) -> int:
    """Token id of the special token ``name``."""
    return self.vocab_size - 1 - self.special_names.index(name)

  def min_length(self) -> int:
    """Smallest ``T`` the knobs allow."""
    return 1

  def example(self, key: jax.Array, T: int) -> tuple[jax.Array, jax.Array]:
    """One sequence: ``(x int32[T], y int32[T])``."""
    raise NotImplementedError

  def answer_sources(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """int32[T]: for each labelled position of one sequence (x, y int32[T]) the position of the
    input token its answer repeats, -1 where there is no label or no single such token (the
    base class: none). t - source is how far back the answer's information entered."""
    return jnp.full(x.shape, -1, jnp.int32)

  def optimal_guesses(self, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """The Bayes-optimal prediction of each y[t] from x[0..t] (under the task's own sampling
    law) for one sequence (x, y int32[T]): {"hit": bool[T], whether its guess is y[t]; "sure":
    bool[T], whether the past determines the answer (one value holds all the posterior mass)},
    both False where there is no label. The mean of "hit" over the labels is the task's
    ceiling, the accuracy no model beats on average. The base class: every answer is a
    function of the tokens up to it, so every guess is sure and right."""
    labelled = y >= 0
    return {"hit": labelled, "sure": labelled}

  def check_length(self, T: int, field: str = "T") -> None:
    """The task's length rule: ValueError naming ``field`` (e.g. "data.T") unless sequences of
    length ``T`` fit the knobs. ``sample`` and config validation both call it."""
    if T < self.min_length():
      raise ValueError(
        f"{field}={T} is too short for task {self.name!r} with {self}: needs {field} >= "
        f"{self.min_length()} (raise {field} or shrink the task's data.kwargs)"
      )

  def sample(self, key: jax.Array, batch_size: int, T: int) -> dict[str, jax.Array]:
    """``{"x": int32[B, T], "y": int32[B, T]}``, a pure function of ``key``."""
    self.check_length(T)
    return _sample(self, key, batch_size, T)

  def decode(self, tokens) -> str | list[str]:
    """Space-separated symbols, specials named, -1 (no label) as ``_``; 2-D: one str per row."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 2:
      return [self.decode(row) for row in tokens]
    names = {self.special(n): f"<{n}>" for n in self.special_names} | {-1: "_"}
    bad = tokens[(tokens < -1) | (tokens >= self.vocab_size)]
    if bad.size:
      raise ValueError(
        f"token {int(bad[0])} outside the vocabulary [0, {self.vocab_size}) of {self.name!r}"
      )
    return " ".join(names.get(int(t), str(int(t))) for t in tokens)


@dataclasses.dataclass(frozen=True)
class Retrieval(SyntheticTask):
  """Needle retrieval: ``<mark> needle`` somewhere in noise; a final ``<mark>`` asks for the needle.

  x = noise with ``<mark>`` at position p, the needle at p+1, and ``<mark>`` at T-1;
  y[T-1] = needle, -1 elsewhere. p is uniform over marker slots ``0 .. T-3`` whose fraction of
  the way through lies in [pos_lo, pos_hi).

  Knobs: pos_lo (float, default 0.0), pos_hi (float, default 0.5): range of the needle position
  as fractions of the sequence (default: the first half).
  """

  pos_lo: float = 0.0
  pos_hi: float = 0.5

  name: ClassVar[str] = "retrieval"
  special_names: ClassVar[tuple[str, ...]] = ("mark",)

  def __post_init__(self):
    super().__post_init__()
    _require(0.0 <= self.pos_lo < 1.0, "pos_lo", self.pos_lo, "must lie in [0, 1)")
    _require(self.pos_lo < self.pos_hi <= 1.0, "pos_hi", self.pos_hi, "must lie in (pos_lo, 1]")

  def min_length(self) -> int:
    return 3

  def slot_range(self, T: int) -> tuple[int, int]:
    """Half-open range [lo, hi) of marker positions for length T (never empty)."""
    slots = T - 2
    lo = min(int(self.pos_lo * slots), slots - 1)
    hi = max(lo + 1, min(math.ceil(self.pos_hi * slots), slots))
    return lo, hi

  def example(self, key, T):
    k_pos, k_tok = jax.random.split(key)
    lo, hi = self.slot_range(T)
    p = jax.random.randint(k_pos, (), lo, hi)
    mark = self.special("mark")
    x = jax.random.randint(k_tok, (T,), 0, self.n_symbols).at[p].set(mark).at[T - 1].set(mark)
    y = _fill(T, -1).at[T - 1].set(x[p + 1])
    return x, y


@dataclasses.dataclass(frozen=True)
class Copy(SyntheticTask):
  """String copy: ``s <sep> a[:-1] <pad>...`` with labels ``a`` after the separator.

  a = reversed(s) if ``reverse`` else s. x = s (L symbols), <sep>, a[0..L-2], then <pad> up to
  T; y[L+i] = a[i] for i < L (the memory after <sep> predicts a[0]); -1 elsewhere.

  Knobs: length (int, default 0 = the longest that fits, T // 2), reverse (bool, default False;
  the PyTorch original always reverses).
  """

  length: int = 0
  reverse: bool = False

  name: ClassVar[str] = "copy"
  special_names: ClassVar[tuple[str, ...]] = ("sep", "pad")

  def __post_init__(self):
    super().__post_init__()
    _require(self.length >= 0, "length", self.length, "must be >= 0 (0 = fill the sequence)")

  def min_length(self) -> int:
    return 2 * max(self.length, 1)

  def example(self, key, T):
    L = self.length or T // 2
    s = jax.random.randint(key, (L,), 0, self.n_symbols)
    a = s[::-1] if self.reverse else s
    pad = T - 2 * L
    x = jnp.concatenate([s, _fill(1, self.special("sep")), a[:-1], _fill(pad, self.special("pad"))])
    y = jnp.concatenate([_fill(L, -1), a, _fill(pad, -1)])
    return x, y

  def answer_sources(self, x, y):
    """y[L + i] repeats s[L - 1 - i] (reversed) or s[i]; L = the string's length."""
    T = x.shape[0]
    L = self.length or T // 2
    i = jnp.arange(T) - L
    source = L - 1 - i if self.reverse else i
    return jnp.where((i >= 0) & (i < L) & (y >= 0), source, -1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Stack(SyntheticTask):
  """Stack state tracking: each token pushes a symbol or is ``<pop>``; a pop emits the popped
  symbol.

  The stack never exceeds ``depth`` (full -> pop) and is never popped empty (empty -> push);
  otherwise a push happens with probability ``p_push``. y[t] = popped symbol where x[t] is
  ``<pop>``, -1 at pushes.

  Knobs: depth (int, default 8), p_push (float, default 0.5).
  """

  depth: int = 8
  p_push: float = 0.5

  name: ClassVar[str] = "stack"
  special_names: ClassVar[tuple[str, ...]] = ("pop",)

  def __post_init__(self):
    super().__post_init__()
    _require(self.depth >= 1, "depth", self.depth, "must be >= 1")
    _require(0.0 < self.p_push < 1.0, "p_push", self.p_push, "must lie in (0, 1)")

  def example(self, key, T):
    pop = self.special("pop")

    def step(carry, k):
      stack, size = carry
      k_op, k_sym = jax.random.split(k)
      push = (size == 0) | ((size < self.depth) & (jax.random.uniform(k_op) < self.p_push))
      sym = jax.random.randint(k_sym, (), 0, self.n_symbols)
      top = stack[jnp.maximum(size - 1, 0)]
      stack = jnp.where(push, stack.at[jnp.minimum(size, self.depth - 1)].set(sym), stack)
      size = size + jnp.where(push, 1, -1)
      return (stack, size), (jnp.where(push, sym, pop), jnp.where(push, -1, top))

    init = (jnp.zeros((self.depth,), jnp.int32), jnp.int32(0))
    _, (x, y) = jax.lax.scan(step, init, jax.random.split(key, T))
    return x, y

  def answer_sources(self, x, y):
    """A pop's answer repeats the push it undoes: the position of the newest push not yet popped."""
    pop = self.special("pop")

    def step(carry, t):
      pushed, size = carry  # Positions of the pushes on the stack, bottom first.
      is_pop = x[t] == pop
      top = pushed[jnp.maximum(size - 1, 0)]
      pushed = jnp.where(is_pop, pushed, pushed.at[size].set(t))
      size = size + jnp.where(is_pop, -1, 1)
      return (pushed, size), jnp.where(is_pop & (y[t] >= 0), top, -1)

    init = (jnp.zeros((x.shape[0],), jnp.int32), jnp.int32(0))
    return jax.lax.scan(step, init, jnp.arange(x.shape[0]))[1].astype(jnp.int32)

  def stack_slots(self, x):
    """The stack after each token of x (T,): (symbols, ages), each (T, depth) int32 with slot 0
    the top; age = t - the position of the slot's push; both -1 in empty slots. A pop of an
    empty stack (never sampled) leaves it empty."""
    pop, slots = self.special("pop"), jnp.arange(self.depth)

    def step(carry, t):
      symbols, pushed, size = carry  # Bottom first.
      is_pop = x[t] == pop
      at = jnp.minimum(size, self.depth - 1)
      symbols = jnp.where(is_pop, symbols, symbols.at[at].set(x[t]))
      pushed = jnp.where(is_pop, pushed, pushed.at[at].set(t))
      size = jnp.clip(size + jnp.where(is_pop, -1, 1), 0, self.depth)
      index = size - 1 - slots  # Slot j (from the top) is entry size - 1 - j (from the bottom).
      held = index >= 0
      index = jnp.maximum(index, 0)
      return (symbols, pushed, size), (
        jnp.where(held, symbols[index], -1),
        jnp.where(held, t - pushed[index], -1),
      )

    init = (jnp.zeros((self.depth,), jnp.int32), jnp.zeros((self.depth,), jnp.int32), 0)
    return jax.lax.scan(step, init, jnp.arange(x.shape[0]))[1]


@dataclasses.dataclass(frozen=True)
class KeysValues(SyntheticTask):
  """Associative recall: n pairs ``key value`` of multi-token strings, then ``<query> key``.

  x = k_1 v_1 ... k_n v_n <query> k_q v_q[:-1] <pad>...; keys are distinct, values are free.
  y = v_q aligned so the memory after the last query-key token predicts v_q[0] (and after
  v_q[i] predicts v_q[i+1]); -1 elsewhere.

  Knobs: n_pairs (int, default 8; 0 = as many as fit T), key_len (int, default 2),
  value_len (int, default 2), disjoint (bool, default False): the PyTorch original's variant,
  keys from the lower ``key_symbols`` = ceil(n_symbols / 2) symbols and values from the rest,
  and the query is the bare key at position n * (key_len + value_len) (``<query>`` unused).
  """

  n_pairs: int = 8
  key_len: int = 2
  value_len: int = 2
  disjoint: bool = False

  name: ClassVar[str] = "keys_values"
  special_names: ClassVar[tuple[str, ...]] = ("query", "pad")

  def __post_init__(self):
    super().__post_init__()
    _require(self.key_len >= 1, "key_len", self.key_len, "must be >= 1")
    _require(self.value_len >= 1, "value_len", self.value_len, "must be >= 1")
    _require(self.n_pairs >= 0, "n_pairs", self.n_pairs, "must be >= 0 (0 = as many as fit)")
    self._check_distinct(self.n_pairs, T=None)

  def _check_distinct(self, n: int, T: int | None, field: str = "T") -> None:
    """Raises unless ``n`` distinct keys exist (T: the length, named ``field``, that chose n
    when n_pairs = 0)."""
    if n <= self.key_symbols**self.key_len:
      return
    what = (
      f"{field}={T} fits {n} pairs (data.kwargs.n_pairs=0)"
      if self.n_pairs == 0
      else f"data.kwargs.n_pairs={n}"
    )
    raise ValueError(
      f"{what} but only {self.key_symbols}**{self.key_len} distinct keys exist; "
      "raise data.kwargs.key_len or data.vocab_size"
    )

  @property
  def key_symbols(self) -> int:
    """Keys use symbols ``0 .. key_symbols - 1``; values the rest if ``disjoint``, else all."""
    return (self.n_symbols + 1) // 2 if self.disjoint else self.n_symbols

  @property
  def marker_len(self) -> int:
    """Tokens of ``<query>`` before the query key: 0 or 1."""
    return 0 if self.disjoint else 1

  def pairs_for(self, T: int) -> int:
    pair = self.key_len + self.value_len
    return self.n_pairs or max((T - pair + 1 - self.marker_len) // pair, 1)

  def min_length(self) -> int:
    return (max(self.n_pairs, 1) + 1) * (self.key_len + self.value_len) - 1 + self.marker_len

  def answer_sources(self, x, y):
    """The queried value's i-th token repeats the i-th value token of the pair whose key the
    query names (keys are distinct, so exactly one pair matches)."""
    T = x.shape[0]
    n, kl, pair = self.pairs_for(T), self.key_len, self.key_len + self.value_len
    query = n * pair + self.marker_len  # Position of the query key's first token.
    keys = x[: n * pair].reshape(n, pair)[:, :kl]
    match = jnp.argmax((keys == x[query : query + kl]).all(axis=1))
    i = jnp.arange(T) - (query + kl - 1)  # Index in the value of the answer at each position.
    source = match * pair + kl + i
    return jnp.where((i >= 0) & (i < self.value_len) & (y >= 0), source, -1).astype(jnp.int32)

  def check_length(self, T: int, field: str = "T") -> None:
    super().check_length(T, field)
    self._check_distinct(self.pairs_for(T), T, field)

  def example(self, key, T):
    n, kl, vl = self.pairs_for(T), self.key_len, self.value_len
    k_idx, k_perm, k_val, k_q = jax.random.split(key, 4)
    # n distinct key indices: sorted draws shifted by their rank, then shuffled.
    ks, mark = self.key_symbols, self.marker_len
    n_keys = min(ks**kl, MAX_DISTINCT_KEYS)
    idx = jnp.sort(jax.random.randint(k_idx, (n,), 0, n_keys - n + 1)) + jnp.arange(n)
    idx = jax.random.permutation(k_perm, idx)
    powers = jnp.array([min(ks**j, MAX_DISTINCT_KEYS) for j in range(kl)])
    keys = (idx[:, None] // powers) % ks  # (n, kl)
    vals = jax.random.randint(k_val, (n, vl), ks if self.disjoint else 0, self.n_symbols)
    q = jax.random.randint(k_q, (), 0, n)
    pad = T - (n + 1) * (kl + vl) + 1 - mark
    x = jnp.concatenate(
      [
        jnp.concatenate([keys, vals], axis=1).reshape(-1),
        _fill(mark, self.special("query")),
        keys[q],
        vals[q, :-1],
        _fill(pad, self.special("pad")),
      ]
    )
    y = jnp.concatenate([_fill(n * (kl + vl) + kl - 1 + mark, -1), vals[q], _fill(pad, -1)])
    return x, y


@dataclasses.dataclass(frozen=True)
class ModularArithmetic(SyntheticTask):
  """In-context modular arithmetic: pairs ``u, (w*u + b) mod V`` with w, b drawn per sequence.

  V = vocab_size (all tokens are residues; a prime V makes every map a bijection).
  w ~ U{1..C-1}, b ~ U{0..C-1} with C = int(coef_frac * V), u ~ U{0..V-1}. x alternates u_i,
  f(u_i); y[2i] = f(u_i) and y[2i+1] = -1. The first ``warmup_pairs`` pairs are unlabelled
  (w, b are not yet inferable).

  Knobs: warmup_pairs (int, default 2), coef_frac (float, default 1.0): bound on w and b as a
  fraction of V (the PyTorch original's variant: 0.2, no warmup).
  """

  warmup_pairs: int = 2
  coef_frac: float = 1.0

  name: ClassVar[str] = "modular"
  default_vocab: ClassVar[int] = 17
  max_vocab: ClassVar[int] = 46340  # w * u stays inside int32

  def __post_init__(self):
    super().__post_init__()
    _require(
      self.vocab_size <= self.max_vocab,
      "vocab_size",
      self.vocab_size,
      f"must be <= {self.max_vocab}",
    )
    _require(self.warmup_pairs >= 0, "warmup_pairs", self.warmup_pairs, "must be >= 0")
    _require(
      0.0 < self.coef_frac <= 1.0 and self.n_coefs >= 2,
      "coef_frac",
      self.coef_frac,
      f"must lie in (0, 1] with int(coef_frac * {self.vocab_size}) >= 2 (w is drawn below it, "
      "from 1)",
    )

  @property
  def n_coefs(self) -> int:
    """C: w and b are drawn below it."""
    return int(self.coef_frac * self.vocab_size)

  def min_length(self) -> int:
    return 2 * self.warmup_pairs + 1

  def optimal_guesses(self, x, y, recent_pairs: int | None = None):
    """The optimal guess of f(u_i) is the value that most of the maps (w, b) consistent with the
    pairs before it send u_i to (w, b are uniform, so every consistent map is equally likely);
    it is sure where they all agree. The first answers are guesses: the ceiling is below 1.

    recent_pairs: the guess of a predictor that sees only the last `recent_pairs` pairs before
    u_i (and u_i): how far back the answers' evidence lies (None = every earlier pair).
    """
    V, C, T = self.vocab_size, self.n_coefs, x.shape[0]
    w, b = jnp.repeat(jnp.arange(1, C), C), jnp.tile(jnp.arange(C), C - 1)  # Every map: (M,).
    n = (T + 1) // 2
    pairs = jnp.concatenate([x, jnp.zeros(2 * n - T, x.dtype)]).reshape(n, 2)
    images = (w * pairs[:, :1] + b) % V  # (n, M): where each map sends u_i.
    misfits = jnp.cumsum(images != pairs[:, 1:], axis=0)  # (n, M): over pairs 0..i.
    before = jnp.concatenate([jnp.zeros_like(misfits[:1]), misfits[:-1]])  # Over pairs < i.
    if recent_pairs is not None:  # Less those over pairs < i - recent_pairs.
      before = before - jnp.pad(before, ((recent_pairs, 0), (0, 0)))[:n]
    alive = (before == 0).astype(jnp.int32)
    votes = jnp.zeros((n, V), jnp.int32).at[jnp.arange(n)[:, None], images].add(alive)
    at_answers = lambda v, fill: jnp.stack([v, jnp.full((n,), fill)], axis=1).reshape(-1)[:T]
    guess = at_answers(votes.argmax(-1), -1)
    sure = at_answers(votes.max(-1) == alive.sum(-1), False)
    return {"hit": (guess == y) & (y >= 0), "sure": sure & (y >= 0)}

  def example(self, key, T):
    k_u, k_w, k_b = jax.random.split(key, 3)
    V, C, n = self.vocab_size, self.n_coefs, (T + 1) // 2
    u = jax.random.randint(k_u, (n,), 0, V)
    f = (jax.random.randint(k_w, (), 1, C) * u + jax.random.randint(k_b, (), 0, C)) % V
    x = jnp.stack([u, f], axis=1).reshape(-1)[:T]
    y = jnp.stack([f, _fill(n, -1)], axis=1).reshape(-1)[:T]
    return x, jnp.where(jnp.arange(T) < 2 * self.warmup_pairs, -1, y)


@dataclasses.dataclass(frozen=True)
class Parity(SyntheticTask):
  """Running parity of random bits: x in {0, 1}, y[t] = (x[0] + ... + x[t]) mod 2.

  Tokens above 1 are unused (vocab_size >= 2).

  Knobs: final_only (bool, default False): label only the last position.
  """

  final_only: bool = False

  name: ClassVar[str] = "parity"
  default_vocab: ClassVar[int] = 2

  def example(self, key, T):
    x = jax.random.randint(key, (T,), 0, 2)
    return x, _final_only(jnp.cumsum(x) % 2, self.final_only)


@dataclasses.dataclass(frozen=True)
class _Recall(SyntheticTask):
  """Recall of an earlier token: y[t] = x[source(t)] where defined, else -1.

  Each labelled t has a range of admissible sources from a favoured end (``near``) to ``far``;
  the source is ``j`` steps from ``near`` towards ``far``, with j = 0 when gamma = 0 and, when
  gamma > 0, j drawn per position with P(j) proportional to gamma**j over the range (the PyTorch
  original's geometric recency / primacy bias).
  """

  final_only: bool = False
  gamma: float = 0.0

  def __post_init__(self):
    super().__post_init__()
    _require(0.0 <= self.gamma < 1.0, "gamma", self.gamma, "must lie in [0, 1) (0 = fixed source)")

  def ends(self, T: int) -> tuple[np.ndarray, np.ndarray]:
    """int[T] near and far end of the source range for each t, -1 (both) where none."""
    raise NotImplementedError

  def offsets(self, key: jax.Array, n: np.ndarray) -> jax.Array:
    """int[T] j in [0, n) with P(j) proportional to gamma**j (all 0 when gamma = 0)."""
    if not self.gamma:
      return jnp.zeros(n.shape, jnp.int32)
    u = jax.random.uniform(key, n.shape)  # inverse CDF of the truncated geometric law
    j = jnp.floor(jnp.log1p(-u * (1.0 - self.gamma**n)) / math.log(self.gamma))
    return jnp.minimum(j.astype(jnp.int32), n - 1)

  def optimal_guesses(self, x, y):
    """With gamma > 0 the source is drawn, so the optimal guess is the token with the largest
    total probability over the admissible sources (weight gamma**j at j steps from ``near``);
    it is sure where they all hold that token."""
    if not self.gamma:
      return super().optimal_guesses(x, y)
    near, far = self.ends(x.shape[0])
    s = np.arange(x.shape[0])[None]
    lo, hi = np.minimum(near, far)[:, None], np.maximum(near, far)[:, None]
    admissible = (s >= lo) & (s <= hi)  # (T, T): the sources y[t] may repeat.
    weight = np.where(admissible, self.gamma ** np.abs(s - near[:, None]), 0.0)
    tokens = jax.nn.one_hot(x, self.vocab_size)
    scores = jnp.asarray(weight, jnp.float32) @ tokens  # (T, V)
    sure = ((jnp.asarray(admissible, jnp.float32) @ tokens) > 0).sum(-1) == 1
    labelled = y >= 0
    return {"hit": (scores.argmax(-1) == y) & labelled, "sure": sure & labelled}

  def example(self, key, T):
    k_x, k_j = jax.random.split(key) if self.gamma else (key, None)
    x = jax.random.randint(k_x, (T,), 0, self.vocab_size)
    near, far = self.ends(T)
    src = near + np.sign(far - near) * self.offsets(k_j, np.abs(far - near) + 1)
    y = jnp.where(near >= 0, x[jnp.maximum(src, 0)], -1)
    return x, _final_only(y, self.final_only)


@dataclasses.dataclass(frozen=True)
class Recency(_Recall):
  """Recency: y[t] = x[t - lag - j] for t >= lag, -1 before; x uniform over the vocabulary.

  j = 0, or with gamma > 0, j in [0, t - lag] with P(j) proportional to gamma**j.

  Knobs: lag (int, default 4), final_only (bool, default False): label only the last position,
  gamma (float in [0, 1), default 0.0; the PyTorch original: lag 0, gamma 0.5).
  """

  lag: int = 4

  name: ClassVar[str] = "recency"

  def __post_init__(self):
    super().__post_init__()
    _require(self.lag >= 0, "lag", self.lag, "must be >= 0")

  def min_length(self) -> int:
    return self.lag + 1

  def ends(self, T):
    t = np.arange(T)
    return np.where(t >= self.lag, t - self.lag, -1), np.where(t >= self.lag, 0, -1)


@dataclasses.dataclass(frozen=True)
class Primacy(_Recall):
  """Primacy: y[t] = x[j] for t >= 1 (y[0] = -1); x uniform over the vocabulary.

  j = 0, or with gamma > 0, j in [0, t] with P(j) proportional to gamma**j.

  Knobs: final_only (bool, default False): label only the last position, gamma (float in
  [0, 1), default 0.0; the PyTorch original: 0.5).
  """

  name: ClassVar[str] = "primacy"

  def min_length(self) -> int:
    return 2

  def ends(self, T):
    t = np.arange(T)
    return np.where(t >= 1, 0, -1), np.where(t >= 1, t, -1)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _sample(task: SyntheticTask, key: jax.Array, batch_size: int, T: int) -> dict[str, jax.Array]:
  """Compiled batch of ``task.example`` (cached per task, batch size and T)."""
  if task.split_salt:
    key = jax.random.fold_in(key, task.split_salt)
  x, y = jax.vmap(lambda k: task.example(k, T))(jax.random.split(key, batch_size))
  return {"x": x.astype(jnp.int32), "y": y.astype(jnp.int32)}


TASKS: dict[str, type[SyntheticTask]] = {
  cls.name: cls
  for cls in (Retrieval, Copy, Stack, KeysValues, ModularArithmetic, Parity, Recency, Primacy)
}


def has_answer_sources(name: str) -> bool:
  """Whether data `name` is a synthetic task that names the input token each answer repeats
  (it overrides SyntheticTask.answer_sources), so that accuracy by lag is defined for it."""
  task = TASKS.get(name)
  return task is not None and task.answer_sources is not SyntheticTask.answer_sources
