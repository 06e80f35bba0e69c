"""Self-evolution (TNASP slides Sec. 3.2, Eq. 8-13, Algorithm 1) for any predictor of the library.

After normal training (Algorithm 1, line 1), T rounds; in round t:

* line 3, Eq. 9: the predictor's predictions ``ŷ^(t)`` on the V validation
  architectures give the evaluation error ``e^(t) = (1/V) Σ_j (ŷ_j^(t) - y_j)^2``;
* line 4: the constraint ``(1/V) Σ_j (ŷ_j^(t) - ȳ_j)^2 = e^(t)`` joins Eq. 8;
* lines 5-9: ``steps`` iterations of the minimax updates of the Lagrangian (Eq. 10)

  ``L(θ, ȳ, λ) = (1/n) Σ_i (f_θ(x_i) - y_i)^2 + α (1/V) Σ_j (f_θ(v_j) - ȳ_j)^2
               + (1/t) Σ_{s≤t} λ^(s) ((1/V) Σ_j (ŷ_j^(s) - ȳ_j)^2 - e^(s))``

  Eq. 11 ``θ ← θ - η_θ ∂L/∂θ`` (Adam), Eq. 12 ``ȳ ← ȳ - η_ȳ ∂L/∂ȳ``, Eq. 13
  ``λ ← λ + η_λ ∂L/∂λ``; all three partials are taken at the same iterate
  ``(θ^k, ȳ^k, λ^k)``.  The training term of each iteration uses a random
  minibatch of ``train_batch`` training architectures (all of them when fewer),
  the validation terms use all V.

The slides write sums over i and j; we use means (the same problem with α and
the step sizes rescaled, independent of n and V).  Everything is in the
standardized target units of the wrapped predictor.  The auxiliary targets
start at the first round's predictions (``ybar_init="prediction"``) or at a
random point of the first constraint's sphere (``"sphere"``: ``ŷ^(1) +
sqrt(e^(1)) z / rms(z)``, z Gaussian; the slides do not say where ȳ starts),
and the multipliers at 0.  ``constraints="all"`` keeps every past round's
constraint (the slides); ``"latest"`` only round t's, with its own multiplier
starting at 0.  The validation labels enter only through the errors
``e^(t)``, as in the slides.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from attnas.errors import ConfigError, ShapeError
from attnas.predictors.train import NeuralPredictor


@dataclass
class SelfEvolutionConfig:
    """Self-evolution settings (ours; the slides give the algorithm, not the values).

    Chosen on NAS-Bench-201 CIFAR-10 with seeds 100-102 (not the benchmark's
    seeds), mostly with the MLP predictor (fast): with α = 1 and η_θ = 2e-4
    the descent-ascent oscillates -- λ swings to about -80, ȳ lands on the
    sphere of radius sqrt(e) around ŷ^(t) in a direction the few constraints
    barely determine, and fitting f(v) to it cut Kendall's tau by 0.1-0.18
    (TNASP at N=78: 0.649 -> 0.576).  These gentle values keep the updates
    stable; 10 iterations per round fit the CPU budget of the benchmark.

    The study of issue 16 (``bench/self_evolution_study.py``, seeds 0-4 held out) found that at these
    values ȳ stays at ŷ^(1) (the centre of the first sphere, where ∂L/∂ȳ ≈ 0), so SE equals 50 extra
    plain training steps; larger η_ȳ moves ȳ away from the labels and lowers tau or diverges.
    """

    rounds: int = 5            # T
    steps: int = 10            # minimax iterations per round ("while not converged")
    alpha: float = 0.05        # weight of the auxiliary-target term
    lr_theta: float = 5e-5     # η_θ (Adam)
    lr_ybar: float = 0.05      # η_ȳ
    lr_lambda: float = 0.1     # η_λ
    train_batch: int = 64      # training architectures per iteration (a random minibatch; all when fewer)
    constraints: str = "all"   # "all": every past round's constraint (slides, Eq. 8); "latest": only round t's
    ybar_init: str = "prediction"  # ȳ starts at ŷ^(1) ("prediction") or on the first sphere ("sphere")

    def __post_init__(self) -> None:
        if self.constraints not in CONSTRAINT_SETS:
            raise ConfigError(f"self-evolution constraints must be one of {list(CONSTRAINT_SETS)}, "
                              f"got {self.constraints!r}")
        if self.ybar_init not in YBAR_INITS:
            raise ConfigError(f"self-evolution ybar_init must be one of {list(YBAR_INITS)}, got {self.ybar_init!r}")


CONSTRAINT_SETS = ("all", "latest")
YBAR_INITS = ("prediction", "sphere")


def lagrangian(pred_train: torch.Tensor, y_train: torch.Tensor, pred_val: torch.Tensor, ybar: torch.Tensor,
               lam: torch.Tensor, yhats: torch.Tensor, errors: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 10 with means: ``yhats`` is ``(t, V)`` (one row per round), ``lam`` and ``errors`` are ``(t,)``."""
    fit = (pred_train - y_train).pow(2).mean()
    aux = alpha * (pred_val - ybar).pow(2).mean()
    violation = (yhats - ybar.unsqueeze(0)).pow(2).mean(1) - errors
    return fit + aux + (lam * violation).mean()


class SelfEvolution:
    """Wrap a :class:`NeuralPredictor` (TNASP, MLP, GCN) with self-evolution.

    ``SelfEvolution(pred).fit(X, y, X_val, y_val)`` trains normally, then runs
    the T rounds; ``evolve`` runs only the rounds on an already trained predictor.
    """

    def __init__(self, predictor: NeuralPredictor, config: SelfEvolutionConfig | None = None) -> None:
        if not isinstance(predictor, NeuralPredictor):
            raise ConfigError(f"self-evolution wraps a NeuralPredictor, got {type(predictor).__name__}")
        self.predictor = predictor
        self.config = config or SelfEvolutionConfig()
        self.errors: list[float] = []
        self.lambdas: list[float] = []
        self.ybar: torch.Tensor | None = None
        self.trace: list[dict[str, float]] = []
        #: progress (a line per round): a callable taking one line, or None
        self.log = None

    @property
    def encoder(self):
        return self.predictor.encoder

    def fit(self, X: Any, y: Sequence[float], X_val: Any, y_val: Sequence[float]) -> "SelfEvolution":
        self.predictor.fit(X, y)
        return self.evolve(X, y, X_val, y_val)

    def predict(self, X: Any) -> np.ndarray:
        return self.predictor.predict(X)

    def evolve(self, X: Any, y: Sequence[float], X_val: Any, y_val: Sequence[float]) -> "SelfEvolution":
        """Algorithm 1, lines 2-10, on the trained predictor (its parameters are updated in place)."""
        p, cfg = self.predictor, self.config
        if p.net is None:
            raise ConfigError("self-evolution needs a trained predictor: call fit first (Algorithm 1, line 1)")
        if cfg.rounds < 1 or cfg.steps < 1:
            raise ConfigError(f"self-evolution needs rounds >= 1 and steps >= 1, got {cfg.rounds}, {cfg.steps}")
        tb, vb = p.encode(X), p.encode(X_val)
        if len(vb) < 1:
            raise ShapeError("self-evolution needs at least one validation architecture")
        y_t = p.standardize(p._targets(y, len(tb), "self-evolution training targets"))
        y_v = p.standardize(p._targets(y_val, len(vb), "self-evolution validation targets"))
        t0 = time.time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed + 104729)
            opt = torch.optim.Adam(p.net.parameters(), lr=cfg.lr_theta, foreach=True)
            yhats: list[torch.Tensor] = []
            errs: list[float] = []
            lam = torch.zeros(0)
            ybar: torch.Tensor | None = None
            round_lams: list[float] = []                                       # "latest": λ at each round's end
            for t in range(cfg.rounds):
                yhat = p.predict_standardized(vb).detach()                     # ŷ^(t)
                errs.append(float((yhat - y_v).pow(2).mean()))                 # Eq. 9
                yhats.append(yhat)                                             # line 4: new constraint
                if cfg.constraints == "all":
                    lam = torch.cat([lam, torch.zeros(1)])
                    Y, E = torch.stack(yhats), torch.tensor(errs)
                else:                                                          # only round t's constraint
                    lam = torch.zeros(1)
                    Y, E = yhat.unsqueeze(0), torch.tensor(errs[-1:])
                if ybar is None:
                    ybar = yhat.clone()
                    if cfg.ybar_init == "sphere":                              # a random point with violation 0
                        z = torch.randn(len(yhat))
                        ybar = ybar + (errs[0] ** 0.5) * z / z.pow(2).mean().sqrt()
                p.net.train()
                for _ in range(cfg.steps):                                     # lines 5-9
                    ybar_v = ybar.clone().requires_grad_(True)
                    lam_v = lam.clone().requires_grad_(True)
                    if len(tb) > cfg.train_batch:
                        idx = torch.randperm(len(tb))[:cfg.train_batch]
                        tb_k, y_k = tb.index(idx), y_t[idx]
                    else:
                        tb_k, y_k = tb, y_t
                    L = lagrangian(p.net(tb_k), y_k, p.net(vb), ybar_v, lam_v, Y, E, cfg.alpha)
                    opt.zero_grad(set_to_none=True)
                    L.backward()
                    opt.step()                                                 # Eq. 11
                    with torch.no_grad():
                        ybar = ybar - cfg.lr_ybar * ybar_v.grad                 # Eq. 12
                        lam = lam + cfg.lr_lambda * lam_v.grad                  # Eq. 13
                p.net.eval()
                if cfg.constraints == "latest":
                    round_lams.append(float(lam[0]))
                self.trace.append({"round": t + 1, "error": errs[-1], "lagrangian": float(L.detach()),
                                   "lambda_mean": float(lam.mean())})
                if self.log is not None:
                    self.log(f"self-evolution round {t + 1}/{cfg.rounds}: validation error {errs[-1]:.4f}, "
                             f"{time.time() - t0:.0f}s elapsed")
        self.errors, self.ybar = errs, ybar
        self.lambdas = lam.tolist() if cfg.constraints == "all" else round_lams
        self.time_s = time.time() - t0
        return self
