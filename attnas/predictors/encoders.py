"""Architecture encoders: a cell becomes *tokens* plus a *graph* over the tokens.

Every predictor in :mod:`attnas.predictors` consumes an :class:`EncodedBatch`:
token ids (one operation / node-type label per token), the directed adjacency
between tokens, a mask of real tokens (padding is masked, never a node), a
segment id per token (normal vs. reduction cell) and the positional encoding
computed from the graph Laplacian (TNASP, Lu et al. 2021, Sec. 3.1: "graph
Laplacian matrix as the positional encoding").

Graphs per space family
-----------------------
* **Edge-keyed cells** (NAS-Bench-201, DARTS, S1-S4; keys ``"<cell>:<src>-><dst>"``):
  operations live on edges, so each cell is turned into its *subdivision
  graph*: one token per cell node (``input`` / ``node`` / ``output``) and one
  token per edge (its operation), wired ``src -> edge -> dst``.  Every edge
  token is thereby a node of an ordinary graph and gets a node-level Laplacian
  position.  An edge whose operation is ``none`` keeps its token (the
  embedding says ``none``) but is not wired: no data flows through it.  Cells
  whose output is the concatenation of the intermediate nodes (DARTS: two
  input nodes) get one extra ``output`` token fed by every intermediate node;
  otherwise the last node is the output (NAS-Bench-201).  Tokens are laid out
  in topological order (per node: its incoming edges, then the node), so
  every graph edge goes from a lower to a higher token index.
* **Chain spaces** (keys ``"layer:<i>"``): one token per layer, a path graph.
* **NAS-Bench-101** (:class:`NB101Encoder`): operations on nodes; the cell is
  pruned (:func:`attnas.benchmarks.nb101.prune_nb101`), its 2..7 real nodes are
  the tokens and the remaining slots are masked padding.

Laplacian positional encoding (decided here, tested in tests/test_predictors.py)
-------------------------------------------------------------------------------
* Which Laplacian: the **symmetric normalized Laplacian of the symmetrised
  graph**, ``L = I - D^{-1/2} (A + A^T) D^{-1/2}`` (Chung's convention
  ``L_ii = 0`` for an isolated token, so padding rows are exactly zero).
  Symmetrising loses nothing: tokens are in topological order, so ``A`` is the
  upper triangle of ``A + A^T``.  Normalizing keeps entries in [-1, 1]
  whatever the node degrees (DARTS output tokens have degree 4-8).
* How it becomes an encoding (``pe="laplacian"``, the default): **token i's
  positional vector is row i of L**, zero-padded to the maximum token count,
  then a learned linear map to the model width (:class:`attnas.predictors.tnasp.TNASPNet`).
  Rows are unambiguous (no eigenvector sign or basis ambiguity for the many
  repeated eigenvalues of these small graphs).  ``pe="laplacian_eig"`` uses
  the eigenvectors of L instead (row i of the eigenvector matrix, eigenvalues
  ascending, computed on the real tokens only; signs are flipped at random
  during training).  ``pe="none"`` switches the positional encoding off (the
  ablation).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from attnas.arch import Architecture, parse_edge_key
from attnas.errors import ArchitectureError, ConfigError, ShapeError

PE_KINDS = ("laplacian", "laplacian_eig", "none")
PAD = 0  # token id of padding; real labels are 1..len(vocab)
_LAYER_RE = re.compile(r"^layer:(\d+)$")


# --------------------------------------------------------------------------- Laplacian
def normalized_laplacian(adj: np.ndarray) -> np.ndarray:
    """``I - D^{-1/2} (A + A^T) D^{-1/2}`` of a (batch of) directed adjacency matrices.

    ``adj`` is ``(..., n, n)``; isolated nodes (degree 0, padding included) get
    an all-zero row and column (Chung's convention).
    """
    a = np.asarray(adj, dtype=np.float64)
    s = np.clip(a + np.swapaxes(a, -1, -2), 0.0, 1.0)
    deg = s.sum(-1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    lap = -inv[..., :, None] * s * inv[..., None, :]
    idx = np.arange(a.shape[-1])
    lap[..., idx, idx] += (deg > 0).astype(np.float64)
    return lap


def laplacian_eigvecs(adj: np.ndarray, n_real: int, size: int) -> np.ndarray:
    """Eigenvectors (as rows per token) of the normalized Laplacian of the first ``n_real`` tokens.

    Returns ``(size, size)``: row i holds token i's coordinates in the
    eigenvectors ordered by ascending eigenvalue; padding rows/columns are zero.
    """
    out = np.zeros((size, size))
    if n_real:
        lap = normalized_laplacian(np.asarray(adj)[:n_real, :n_real])
        _, vecs = np.linalg.eigh(lap)
        out[:n_real, :n_real] = vecs
    return out


def positional_encoding(adj: np.ndarray, n_real: np.ndarray, kind: str) -> np.ndarray:
    """``(B, N, N)`` positional vectors for a batch of padded graphs (see module doc)."""
    if kind not in PE_KINDS:
        raise ConfigError(f"unknown positional encoding '{kind}'; expected one of {list(PE_KINDS)}")
    b, n, _ = adj.shape
    if kind == "none":
        return np.zeros((b, n, n), dtype=np.float32)
    if kind == "laplacian":
        return normalized_laplacian(adj).astype(np.float32)
    out = np.zeros((b, n, n), dtype=np.float32)
    for k in np.unique(n_real):  # eigh per real size, batched
        sel = np.nonzero(n_real == k)[0]
        if k == 0:
            continue
        lap = normalized_laplacian(adj[sel][:, :k, :k])
        _, vecs = np.linalg.eigh(lap)
        out[sel, :k, :k] = vecs
    return out


# --------------------------------------------------------------------------- batches
@dataclass
class EncodedBatch:
    """Tensors for a batch of B architectures with N token slots.

    ops: (B, N) long, 0 = padding; adj: (B, N, N) float, ``adj[b, i, j] = 1``
    for an edge from token i to token j; mask: (B, N) bool, True = real token;
    seg: (B, N) long cell/segment id; pos: (B, N, N) float positional vectors.
    """

    ops: torch.Tensor
    adj: torch.Tensor
    mask: torch.Tensor
    seg: torch.Tensor
    pos: torch.Tensor

    def __len__(self) -> int:
        return int(self.ops.shape[0])

    def index(self, idx: Any) -> "EncodedBatch":
        """Rows ``idx`` (a slice, index tensor or array)."""
        if isinstance(idx, np.ndarray):
            idx = torch.as_tensor(idx, dtype=torch.long)
        return EncodedBatch(self.ops[idx], self.adj[idx], self.mask[idx], self.seg[idx], self.pos[idx])

    @staticmethod
    def cat(batches: Sequence["EncodedBatch"]) -> "EncodedBatch":
        return EncodedBatch(*(torch.cat([getattr(b, f) for b in batches])
                              for f in ("ops", "adj", "mask", "seg", "pos")))


@dataclass
class CellGraph:
    """One architecture as tokens (labels) and a directed adjacency over them."""

    tokens: list[str]
    adjacency: np.ndarray
    segments: list[int]


class ArchEncoder(ABC):
    """Turns architectures of one space into :class:`EncodedBatch` tensors.

    ``vocab``: token labels (id = position + 1; 0 is padding); ``max_tokens``:
    N; ``num_segments``: number of cell types; ``unused_token_id``: the token id
    of an unused edge (``none``: a token that is not wired), -1 where the
    encoding has no such tokens (chains, NAS-Bench-101); ``positional_slots``:
    token slot i is the same place (layer i) in every architecture, so a
    readout may keep the slots apart (chains).
    """

    space: str
    vocab: tuple[str, ...]
    max_tokens: int
    num_segments: int = 1
    unused_token_id: int = -1
    positional_slots: bool = False

    def __init__(self, pe: str = "laplacian") -> None:
        if pe not in PE_KINDS:
            raise ConfigError(f"unknown positional encoding '{pe}'; expected one of {list(PE_KINDS)}")
        self.pe = pe

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 1

    @abstractmethod
    def graph(self, item: Any) -> CellGraph:
        """Tokens and adjacency of one item (raises ArchitectureError on bad input)."""

    def _arrays(self, items: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ops, adj, n_real, seg) numpy arrays; subclasses may vectorize."""
        b, n = len(items), self.max_tokens
        ops = np.zeros((b, n), dtype=np.int64)
        adj = np.zeros((b, n, n), dtype=np.float32)
        seg = np.zeros((b, n), dtype=np.int64)
        n_real = np.zeros(b, dtype=np.int64)
        ids = {t: i + 1 for i, t in enumerate(self.vocab)}
        for r, item in enumerate(items):
            g = self.graph(item)
            k = len(g.tokens)
            if k > n:
                raise ShapeError(f"{self.space}: architecture has {k} tokens, the encoder holds {n}")
            try:
                ops[r, :k] = [ids[t] for t in g.tokens]
            except KeyError as e:
                raise ArchitectureError(f"{self.space}: unknown operation {e.args[0]!r}; expected one of "
                                        f"{list(self.vocab)}") from None
            adj[r, :k, :k] = g.adjacency
            seg[r, :k] = g.segments
            n_real[r] = k
        return ops, adj, n_real, seg

    def encode(self, items: Iterable[Any]) -> EncodedBatch:
        """Encode architectures (whatever :meth:`graph` accepts) into one padded batch."""
        items = list(items)
        if not items:
            raise ArchitectureError(f"{self.space}: nothing to encode (empty list of architectures)")
        ops, adj, n_real, seg = self._arrays(items)
        mask = np.arange(self.max_tokens)[None, :] < n_real[:, None]
        pos = positional_encoding(adj, n_real, self.pe)
        return EncodedBatch(torch.from_numpy(ops), torch.from_numpy(adj.astype(np.float32)),
                            torch.from_numpy(mask), torch.from_numpy(seg), torch.from_numpy(pos))

    def describe(self) -> dict[str, Any]:
        return {"space": self.space, "encoder": type(self).__name__, "tokens": self.max_tokens,
                "vocab": list(self.vocab), "segments": self.num_segments, "pe": self.pe}


def _check_space(arch: Any, space: str) -> Architecture:
    if not isinstance(arch, Architecture):
        raise ArchitectureError(f"expected an Architecture of space '{space}', got {type(arch).__name__}")
    if arch.space != space:
        raise ArchitectureError(f"architecture is for space '{arch.space}', the encoder is for '{space}'")
    return arch


# --------------------------------------------------------------------------- edge-keyed cells
class EdgeCellEncoder(ArchEncoder):
    """Subdivision-graph encoder for edge-keyed cell spaces (NAS-Bench-201, DARTS, S1-S4).

    ``points``: the space's choice points (all keys ``"<cell>:<src>-><dst>"``).
    ``output``: ``"concat"`` (extra output token fed by every non-input node),
    ``"last"`` (the highest node is the output) or ``"auto"`` (concat when a
    cell has more than one input node).
    """

    def __init__(self, space: str, points: Sequence[Any], pe: str = "laplacian", output: str = "auto") -> None:
        super().__init__(pe)
        if output not in ("auto", "concat", "last"):
            raise ConfigError(f"output must be 'auto', 'concat' or 'last', got '{output}'")
        self.space = space
        self.candidates: dict[str, tuple[str, ...]] = {}
        cells: dict[str, list[tuple[int, int]]] = {}
        for p in points:
            c, s, d = parse_edge_key(p.key)
            cells.setdefault(c, []).append((s, d))
            self.candidates[p.key] = tuple(p.candidates)
        if not cells:
            raise ConfigError(f"space '{space}' has no edge choice points to encode")
        self.cells = list(cells)
        self.num_segments = len(self.cells)
        tokens: list[str] = []
        segs: list[int] = []
        const_edges: list[tuple[int, int]] = []
        self.edge_keys: list[str] = []
        edge_tok, src_tok, dst_tok = [], [], []
        for ci, c in enumerate(self.cells):
            edges = sorted(cells[c], key=lambda e: (e[1], e[0]))
            dsts = {d for _, d in edges}
            nodes = sorted({s for s, _ in edges} | dsts)
            inputs = [v for v in nodes if v not in dsts]
            mode = output if output != "auto" else ("concat" if len(inputs) > 1 else "last")
            node_tok: dict[int, int] = {}
            for v in inputs:
                node_tok[v] = len(tokens)
                tokens.append("input")
                segs.append(ci)
            for v in nodes:
                if v in node_tok:
                    continue
                incoming = [s for s, d in edges if d == v]
                for s in incoming:
                    self.edge_keys.append(f"{c}:{s}->{v}")
                    edge_tok.append(len(tokens))
                    src_tok.append(node_tok[s])
                    tokens.append("<edge>")
                    segs.append(ci)
                node_tok[v] = len(tokens)
                dst_tok += [node_tok[v]] * len(incoming)
                tokens.append("output" if mode == "last" and v == nodes[-1] else "node")
                segs.append(ci)
            if mode == "concat":
                out = len(tokens)
                tokens.append("output")
                segs.append(ci)
                const_edges += [(node_tok[v], out) for v in nodes if v not in inputs]
        self.max_tokens = len(tokens)
        # 'none' marks an edge the cell does not use (attnas.arch), even where it is no candidate (S1, S2, S4)
        self.candidates = {k: c if "none" in c else (*c, "none") for k, c in self.candidates.items()}
        ops_vocab = sorted({o for cands in self.candidates.values() for o in cands})
        self.vocab = ("input", "node", "output", *ops_vocab)
        ids = {t: i + 1 for i, t in enumerate(self.vocab)}
        self._base_ops = np.array([0 if t == "<edge>" else ids[t] for t in tokens], dtype=np.int64)
        self._segs = np.array(segs, dtype=np.int64)
        self._edge_tok = np.array(edge_tok)
        self._src_tok = np.array(src_tok)
        self._dst_tok = np.array(dst_tok)
        self._const = np.zeros((self.max_tokens, self.max_tokens), dtype=np.float32)
        for s, d in const_edges:
            self._const[s, d] = 1.0
        self._op_ids = {k: np.array([ids[o] for o in self.candidates[k]]) for k in self.edge_keys}
        self.unused_token_id = ids.get("none", -1)

    def _edge_ops(self, arch: Any) -> list[int]:
        a = _check_space(arch, self.space)
        if set(a.choices) != set(self.edge_keys):
            missing = sorted(set(self.edge_keys) - set(a.choices))
            extra = sorted(set(a.choices) - set(self.edge_keys))
            raise ArchitectureError(f"architecture does not match space '{self.space}': "
                                    f"missing {missing[:4]} unknown {extra[:4]}")
        out = []
        for k in self.edge_keys:
            op = a.choices[k]
            cands = self.candidates[k]
            if op not in cands:
                raise ArchitectureError(f"operation '{op}' is not a candidate of '{k}' in space '{self.space}'; "
                                        f"expected one of {list(cands)}")
            out.append(int(self._op_ids[k][cands.index(op)]))
        return out

    def _arrays(self, items: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        b, n = len(items), self.max_tokens
        eops = np.array([self._edge_ops(a) for a in items], dtype=np.int64)  # (B, E)
        ops = np.repeat(self._base_ops[None], b, axis=0)
        ops[:, self._edge_tok] = eops
        active = (eops != self.unused_token_id).astype(np.float32)
        adj = np.repeat(self._const[None], b, axis=0)
        rows = np.arange(b)[:, None]
        adj[rows, self._src_tok[None, :], self._edge_tok[None, :]] = active
        adj[rows, self._edge_tok[None, :], self._dst_tok[None, :]] = active
        return ops, adj, np.full(b, n, dtype=np.int64), np.repeat(self._segs[None], b, axis=0)

    def graph(self, item: Any) -> CellGraph:
        ops, adj, _, seg = self._arrays([item])
        return CellGraph([self.vocab[i - 1] for i in ops[0]], adj[0], seg[0].tolist())


# --------------------------------------------------------------------------- chains
class ChainEncoder(ArchEncoder):
    """One token per layer (keys ``"layer:<i>"``), wired as a path ``0 -> 1 -> ...``."""

    positional_slots = True

    def __init__(self, space: str, points: Sequence[Any], pe: str = "laplacian") -> None:
        super().__init__(pe)
        self.space = space
        layers = []
        for p in points:
            m = _LAYER_RE.match(p.key)
            if not m:
                raise ConfigError(f"space '{space}': '{p.key}' is not a layer key 'layer:<i>'")
            layers.append((int(m.group(1)), p.key, tuple(p.candidates)))
        if not layers:
            raise ConfigError(f"space '{space}' has no layer choice points to encode")
        layers.sort()
        self.keys = [k for _, k, _ in layers]
        self.candidates = {k: c for _, k, c in layers}
        self.vocab = tuple(sorted({o for _, _, c in layers for o in c}))
        self.max_tokens = len(layers)
        self._ids = {t: i + 1 for i, t in enumerate(self.vocab)}
        self._adj = np.zeros((self.max_tokens, self.max_tokens), dtype=np.float32)
        for i in range(self.max_tokens - 1):
            self._adj[i, i + 1] = 1.0

    def graph(self, item: Any) -> CellGraph:
        a = _check_space(item, self.space)
        if set(a.choices) != set(self.keys):
            raise ArchitectureError(f"architecture does not match space '{self.space}': expected keys "
                                    f"{self.keys[:3]}...{self.keys[-1]}, got {sorted(a.choices)[:4]}")
        tokens = []
        for k in self.keys:
            if a.choices[k] not in self.candidates[k]:
                raise ArchitectureError(f"operation '{a.choices[k]}' is not a candidate of '{k}' in space "
                                        f"'{self.space}'; expected one of {list(self.candidates[k])}")
            tokens.append(a.choices[k])
        return CellGraph(tokens, self._adj.copy(), [0] * self.max_tokens)


# --------------------------------------------------------------------------- NAS-Bench-101
class NB101Encoder(ArchEncoder):
    """Operation-on-node cells of NAS-Bench-101: pruned real nodes as tokens, the rest masked padding.

    Items: :class:`attnas.benchmarks.nb101.NB101Record` or ``(adjacency, ops)``
    pairs (op names, or NAS-Bench-101 op codes 0..4).
    """

    space = "nb101"

    def __init__(self, pe: str = "laplacian", max_nodes: int = 7) -> None:
        super().__init__(pe)
        from attnas.benchmarks.nb101 import NB101_OPS

        self.vocab = NB101_OPS
        self.max_tokens = int(max_nodes)

    def graph(self, item: Any) -> CellGraph:
        from attnas.benchmarks.nb101 import NB101_OPS, NB101Record, prune_nb101

        if isinstance(item, NB101Record):
            adj, ops = item.raw_adjacency, item.raw_ops
        elif isinstance(item, (tuple, list)) and len(item) >= 2:
            adj, ops = item[0], item[1]
        else:
            raise ArchitectureError(f"nb101: expected an NB101Record or an (adjacency, ops) pair, got "
                                    f"{type(item).__name__}")
        ops = [NB101_OPS[o] if isinstance(o, (int, np.integer)) and 0 <= o < len(NB101_OPS) else o for o in ops]
        a, o = prune_nb101(np.asarray(adj), ops)
        return CellGraph(list(o), a.astype(np.float32), [0] * len(o))


# --------------------------------------------------------------------------- factory
def encoder_for(space: Any, pe: str = "laplacian", **space_options: Any) -> ArchEncoder:
    """The encoder of a space: a registered space name or instance, or ``"nb101"``.

    Edge-keyed spaces get :class:`EdgeCellEncoder`, layer-keyed spaces
    :class:`ChainEncoder`; anything else is a :class:`ConfigError`.
    """
    if space == "nb101":
        return NB101Encoder(pe)
    if isinstance(space, str):
        from attnas.spaces.registry import get_space

        space = get_space(space, **space_options)
    points = space.choice_points()
    keys = [p.key for p in points]
    if keys and all(_LAYER_RE.match(k) for k in keys):
        return ChainEncoder(space.name, points, pe)
    if keys and all("->" in k and ":" in k for k in keys):
        return EdgeCellEncoder(space.name, points, pe)
    raise ConfigError(f"space '{space.name}' mixes or uses unknown choice-point keys ({keys[:3]}); "
                      "the encoders take edge keys '<cell>:<src>-><dst>' or layer keys 'layer:<i>'")
