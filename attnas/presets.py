"""Paper hyper-parameters, one preset per method.

Every literal a method's paper fixes lives here, with its source; the
strategies read them from their config dataclass, and users override any
field with ``--config FILE`` (``method_options``) or ``--epochs`` /
``--batch-size``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from attnas.errors import ConfigError


@dataclass(frozen=True)
class WeightOptim:
    """SGD with a cosine schedule, as DARTS trains supernet weights (Liu et al. 2019, Sec. 3.1.1)."""

    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0


@dataclass(frozen=True)
class DartsPreset:
    """DARTS search (Liu et al., ICLR 2019, Sec. 3.1.1): 50 epochs, batch 64, Adam 3e-4 for alpha."""

    epochs: int = 50
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=WeightOptim)
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    order: int = 1            # 1: first-order approximation, 2: unrolled (Eq. 7-8)
    unrolled_eps: float = 0.01  # finite-difference epsilon numerator (Eq. 8: eps = 0.01 / ||grad||)
    train_portion: float = 0.5  # half of the training set for w, half for alpha
    #: activation checkpointing of the mixtures (attnas engineering, not in the paper):
    #: "all" recomputes every choice block in the backward pass (same values and gradients);
    #: "auto" lets the space choose (``SearchSpace.mixture_recompute``): "all" in the DARTS
    #: space (8 cells C=16, batch 64, 2 CPU threads: 9.0 s / 1.61 GiB per step, against
    #: 7.0 s / 4.79 GiB with "first_stage" and 6.2 s / 7.69 GiB with "none"), "none" on
    #: NAS-Bench-201 (1.7 s / 0.94 GiB against 2.7 s / 0.86 GiB) -- bench/search_step.py
    recompute: str = "auto"


@dataclass(frozen=True)
class RandomPreset:
    """Random search with weight sharing (Li & Talwalkar, UAI 2019): a uniformly sampled
    architecture trains the supernet each step; afterwards ``num_samples`` random
    architectures are scored on the validation split with inherited weights."""

    epochs: int = 50
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=WeightOptim)
    num_samples: int = 100
    eval_batches: int = 10
    train_portion: float = 0.5


@dataclass(frozen=True)
class ITNASChainProtocol:
    """IT-NAS on chain spaces (Sec. 4.2, Appendix A.3, ProxylessNAS on ImageNet): the paper samples
    one uniform path per step as SPOS; here two candidates per layer per step (``sample_k`` 2, a
    departure): with one, the NAS-Bench-Macro supernet did not learn and its output became
    input-independent once the transformer trained (4,000 CIFAR-10 images, 6 epochs, seed 0:
    training accuracy <= 0.145 and validation 0.09 with k = 1, also with the transformer on Adam
    without weight decay; 0.35 / 0.335 with k = 2; docs/benchmarks.md).  The supernet trained on 10 % of ImageNet
    and selected on 2.5 % (``train_portion`` 0.8 of the training images), SGD lr 0.25 for batch
    512 decayed to 5e-4, weight decay 4e-5 -- here linearly scaled to batch 64
    (0.25 x 64/512 = 0.03125, 5e-4 x 64/512 = 6.25e-5).  The paper's 240 epochs are the
    user's ``--epochs``."""

    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.03125, lr_min=6.25e-5,
                                                                     weight_decay=4e-5))
    train_portion: float = 0.8
    sample_k: int = 2
    #: no transformer ramp on chain spaces (NAS-Bench-Macro was measured without it)
    transformer_ramp: float = 0.0


@dataclass(frozen=True)
class ITNASPreset:
    """IT-NAS search (Appendix A.3, Sec. 4.1): supernet weights by SGD (lr 0.025, momentum 0.9,
    weight decay 3e-4, as DARTS) for 50 epochs, batch 64, on half of the training set; the
    other half is the validation pass of Eq. 6.

    Lite-Transformer (Sec. 3.3; :mod:`attnas.ops.lite_transformer`, choices and evidence in
    :mod:`attnas.strategies.itnas`): query/key width ``qk_dim`` (0 = the token's channel
    count), FFN hidden width ``ffn_ratio`` x channels (ViT's MLP ratio), LayerNorm ``ln_eps``;
    initial scale of the indicator token ``it_init_std`` and of the position codes
    ``pos_init_std`` (1: on the scale of the unit-variance candidate maps); ``patterns``
    learned spatial patterns in the (linear, factorised) key; ``rms`` adds the per-channel RMS
    to the key (off: it keys on energy); ``center`` batch-centres the content part of the key.
    The transformer weights are trained in the same mono-level step (Eq. 5) by
    ``transformer_optim``: "sgd" (one SGD for everything, Appendix A.3 read literally) or
    "adam" with DARTS's architecture settings (``transformer_lr``, ``transformer_betas``,
    ``transformer_weight_decay``); ``zero_key`` starts the key projection at zero (uniform
    initial attention); ``value_codes`` keeps the position codes in the values (the paper adds
    them to the tokens); ``update``: "mono" (Eq. 5) or "bi" (a departure: the transformer
    weights step on the architecture split, DARTS-style; needs "adam").
    ``sampling``: "all" trains every candidate each step (cell spaces, DARTS-style),
    "uniform" samples ``sample_k`` candidates per choice point (chain spaces), "auto" picks
    "uniform" for chain spaces (``layer:<i>`` keys); there the ``chain`` protocol's optimizer,
    split and ``sample_k`` replace the cell-space ones.  ``bootstrap``: resamples of the
    validation batches for the selection margins.
    The chain-space run of the paper (ProxylessNAS on ImageNet) used lr 0.25, lr_min 5e-4,
    weight decay 4e-5, 240 epochs, batch 512: pass them with ``--method-options``."""

    epochs: int = 50
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=WeightOptim)
    train_portion: float = 0.5
    qk_dim: int = 0
    ffn_ratio: int = 4
    ln_eps: float = 1e-5
    it_init_std: float = 1.0
    pos_init_std: float = 1.0
    #: "orthogonal" (orthogonal codes of an i.i.d. code's norm, as near-orthogonal as the paper's
    #: codes in d = c*h*w dimensions) or "normal" (i.i.d. codes in c dimensions: coupled logits)
    pos_init: str = "orthogonal"
    patterns: int = 3
    rms: bool = False
    center: bool = True
    zero_key: bool = True
    value_codes: bool = True
    #: "post" (the paper's post-LN layer) or "none" (a departure: no LayerNorm on the output)
    output_norm: str = "post"
    transformer_optim: str = "sgd"
    #: "mono" (Eq. 5) or "bi" (a departure: transformer weights on the architecture split, DARTS-style)
    update: str = "mono"
    #: the first ``round(warmup * epochs)`` epochs train only the supernet, under the initial
    #: uniform attention (a departure; PC-DARTS warms up 15 of 50 epochs, i.e. 0.3)
    warmup: float = 0.3
    #: after the warm-up, the transformer weights' updates rise linearly from 0 to full over
    #: ``round(transformer_ramp * epochs)`` epochs (a departure: the usual learning-rate
    #: warm-up of transformers; by scaling their gradients, so with transformer_optim "sgd" and
    #: update "mono" only); 0 = off.  0.2 since 2026-12-04: NB201 proxy seeds 5-9, 93.07 ± 0.36 against 91.67 ± 2.95 without (docs/benchmarks.md)
    transformer_ramp: float = 0.2
    transformer_lr: float = 3e-4
    transformer_betas: tuple[float, float] = (0.5, 0.999)
    transformer_weight_decay: float = 1e-3
    sampling: str = "auto"
    sample_k: int = 2
    #: on chain spaces (sampled paths) these replace ``weights``, ``train_portion`` and ``sample_k``
    chain: ITNASChainProtocol = field(default_factory=ITNASChainProtocol)
    bootstrap: int = 200
    #: activation checkpointing of the choice blocks, as for DARTS (attnas engineering, not
    #: in the paper): "first_stage" recomputes the full-resolution blocks in the backward pass
    recompute: str = "first_stage"


@dataclass(frozen=True)
class SPOSPreset:
    """Single-path one-shot NAS (Guo et al., ECCV 2020) and its evolutionary search.

    Supernet training (SPOS Sec. 4 and reference code): SGD, momentum 0.9, weight decay
    4e-5, no gradient clipping (``grad_clip`` 0), learning rate 0.5 for batch 1024 decayed
    linearly to 0 -- here 0.5 x 64/1024 for the default batch of 64 (linear scaling rule),
    ``lr_schedule`` "linear" (per epoch) or "cosine"; 120 epochs.  ``train_portion`` 0.8:
    SPOS holds out a validation split for scoring sub-networks (50k of ImageNet's 1.28M
    images, 4 %); on the small datasets of this library 20 % keeps the scoring split large
    enough to rank sub-networks.  The supernet is single-level: every epoch trains on every
    image of the weight split (the search task builds no architecture batches for it).
    ``fair``: FairNAS strict fairness (Chu et al., ICCV 2021, Alg. 1) instead of one
    uniform path per step.

    Evolution (SPOS Sec. 3.4 / Alg. 1, reference ``search.py``): population 50, 20
    generations, top-k 10, 25 mutations (per-choice probability 0.1) and 25 crossovers
    per generation, at most 10x as many draws as wanted per step; ``flops_budget`` /
    ``macs_budget`` / ``params_budget``: absolute limits (FLOPs = 2 x multiply-accumulates per
    image, multiply-accumulates per image, parameter count; :mod:`attnas.profile`), None = no
    limit.  SPOS' "FLOPs" (e.g. 330M) are multiply-accumulates: give them as ``macs_budget``.
    BN statistics recomputed on ``bn_images`` training images before scoring (SPOS Sec. 3.4:
    20,000 on ImageNet); scored on ``eval_images`` validation images (0 = the whole
    validation split).
    """

    epochs: int = 120
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(
        lr=0.5 * 64 / 1024, lr_min=0.0, momentum=0.9, weight_decay=4e-5, grad_clip=0.0))
    lr_schedule: str = "linear"
    train_portion: float = 0.8
    fair: bool = False
    population: int = 50
    generations: int = 20
    top_k: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1
    max_tries_factor: int = 10
    flops_budget: float | None = None
    params_budget: float | None = None
    macs_budget: float | None = None
    bn_images: int = 20000
    eval_images: int = 0
    #: activation checkpointing of the choice blocks (attnas engineering, not in the paper;
    #: :func:`attnas.spaces.base.set_recompute`): "all" keeps only each block's input (and not
    #: the stem's maps) for the backward pass and recomputes the rest -- same values, gradients
    #: and BN statistics.  "auto" (default): "all" for inputs of 128 px and more, "none" below
    #: (``attnas.strategies.spos.RECOMPUTE_MIN_IMAGE``).  ProxylessNAS 224x224, batch 64, with
    #: the CPU memory pool: 1.29 GiB against 2.65 at about 1.3x the time (docs/benchmarks.md,
    #: "Speed against the peers"); at 32x32 the maps are 50x smaller and it would only cost time.
    recompute: str = "auto"


@dataclass(frozen=True)
class EnTranNASPreset:
    """EnTranNAS / EnTranNAS-DST search (Yang et al., CVPR 2021, Sec. 2.2-2.5).

    From the paper: the first normal and the first reduction cell are engine cells
    (``engine_cells`` "first"; "last", "all" or a list of cell indices for the Table 1
    ablation), bottleneck reduction ratio 4 before the candidates (Sec. 2.5), softmax with
    temperature annealed by epoch and no Gumbel noise (Eq. 5), sparsity weight
    ``sparsity_lambda`` of Eq. 11 (the paper shows lambda = 0.1).  Bi-level optimisation
    and every optimiser setting as DARTS first order (the paper follows [32]).

    Choices the paper leaves open (attnas): the schedule of tau -- ``tau_schedule``
    "linear" (GDAS [46]: 10 -> 0.1 over the search), "exponential" or "constant";
    ``beta_init`` 0 (t = 0.5: every connection survives at the start, since
    p_hat ~ 1 for the near-uniform initial alphas); ``t_max`` caps t = sigmoid(beta) below
    1 in float32, so the strongest connection of every node keeps q > 0 (Eq. 8).
    No activation checkpointing: engine cells work at C/4 channels and transit cells
    compute two inputs per node, so the full-resolution stage is small."""

    epochs: int = 50
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=WeightOptim)
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    order: int = 1
    unrolled_eps: float = 0.01
    train_portion: float = 0.5
    engine_cells: Any = "first"
    bottleneck_ratio: int = 4
    tau_schedule: str = "linear"
    tau_max: float = 10.0
    tau_min: float = 0.1
    dst: bool = False
    sparsity_lambda: float = 0.1
    beta_init: float = 0.0
    t_max: float = 1.0 - 1e-6


@dataclass(frozen=True)
class NOSPreset(DartsPreset):
    """NOS attention-guided search (Sec. 3.3, 4.1, Appendix A.2.1): DARTS bi-level search of an
    8-cell proxy for 25 epochs; weights by SGD 0.025 (momentum 0.9, weight decay 3e-4) cosine-
    decayed to 0; the 18x11 architecture matrix by Adam, fixed lr 6e-4, weight decay 1e-3.
    ``at_weight``: lambda of Eq. 8-9 (1e3).  ``at_reduction``: "mean_sq" -- per stage the mean
    over positions and samples of the squared difference of the L2-normalised attention maps,
    as in the attention-transfer reference code whose weight 1e3 the paper adopts -- or "norm":
    the L2 norm of Eq. 6 as printed, averaged over samples.  Teacher (Sec. 3.3): ``teacher``
    ("module:Class", a registered teacher class: :data:`attnas.teacher.TEACHER_CLASSES`), ``teacher_options`` (constructor kwargs), ``teacher_checkpoint`` (a file or
    an ``attnas teacher train`` run folder; class / options / stages default to what it
    records) and ``teacher_stages`` (module names matched, in order, with the proxy's three
    stages).  No teacher: plain NOS search without guidance.  Only the first-order DARTS step
    (``order`` 1).  ``recompute`` "none": checkpointing a heterogeneous mixture costs more time
    than it saves memory at proxy widths (attnas engineering)."""

    epochs: int = 25
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.025, lr_min=0.0,
                                                                     momentum=0.9, weight_decay=3e-4))
    arch_lr: float = 6e-4
    arch_weight_decay: float = 1e-3
    recompute: str = "none"
    at_weight: float = 1e3
    at_reduction: str = "mean_sq"
    teacher: str | None = None
    teacher_options: dict[str, Any] = field(default_factory=dict)
    teacher_checkpoint: str | None = None
    teacher_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrainPreset:
    """DARTS evaluation training (Liu et al. 2019, Sec. 3.2), the recipe ``darts`` of ``attnas train``
    (:data:`RETRAIN_RECIPES`): 600 epochs, batch 96, SGD 0.025 (momentum 0.9), cosine, weight decay
    3e-4, auxiliary weight 0.4, drop-path 0.2, cutout 16, grad clip 5.

    The schedule fields every recipe shares (:mod:`attnas.training.schedules`, stepped per epoch):
    ``lr_schedule`` "cosine" (to ``weights.lr_min``), "linear" (to ``weights.lr_min``) or "step"
    (multiplied by ``step_gamma`` every ``step_size`` epochs), after ``warmup_epochs`` of linear
    warm-up (epoch e < w trains at lr x (e + 1) / (w + 1)); ``nesterov`` momentum;
    ``label_smoothing`` of the training loss; ``weights.grad_clip`` 0 clips nothing."""

    epochs: int = 600
    batch_size: int = 96
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.025, lr_min=0.0,
                                                                     weight_decay=3e-4))
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    step_size: int = 30
    step_gamma: float = 0.1
    nesterov: bool = False
    label_smoothing: float = 0.0
    auxiliary_weight: float = 0.4
    drop_path: float = 0.2
    cutout: int = 16


@dataclass(frozen=True)
class TeacherPreset(RetrainPreset):
    """Teacher training (NOS Appendix A.2.1, ResNet-18 / PyramidNet-110 on CIFAR): SGD 0.025,
    momentum 0.9, weight decay 1e-4, batch 32, 300 epochs (step decay by 10 every 30 epochs in
    the paper -- ``{"lr_schedule": "step", "step_size": 30}``; attnas's default is the cosine
    schedule); standard augmentation, no cutout, no auxiliary head, no drop-path.  Trained by
    the retraining task, so every field of :class:`RetrainPreset` applies."""

    epochs: int = 300
    batch_size: int = 32
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.025, lr_min=0.0,
                                                                     momentum=0.9, weight_decay=1e-4))
    auxiliary_weight: float = 0.0
    drop_path: float = 0.0
    cutout: int = 0


@dataclass(frozen=True)
class NOSRetrainPreset(RetrainPreset):
    """NOS cell evaluation on CIFAR-10 (NOS Appendix A.2.1 and Sec. 4.2), recipe ``nos``: the
    evaluation network trained from scratch for 600 epochs, batch 128, SGD momentum 0.9, learning
    rate 0.25 cosine-decayed to 0, weight decay 3e-4 (CIFAR-10; 5e-4 for CIFAR-100: recipe
    ``nos-cifar100``), cutout 16, drop-path 0.3, auxiliary tower with loss weight 0.4 (20 cells,
    36 initial channels: ``--network-options``); no attention transfer.  Left open by the paper:
    gradient clipping -- DARTS's 5, the evaluation NOS follows."""

    epochs: int = 600
    batch_size: int = 128
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.25, lr_min=0.0, momentum=0.9,
                                                                     weight_decay=3e-4))
    auxiliary_weight: float = 0.4
    drop_path: float = 0.3
    cutout: int = 16


@dataclass(frozen=True)
class NOSCifar100RetrainPreset(NOSRetrainPreset):
    """NOS cell evaluation on CIFAR-100 (Appendix A.2.1), recipe ``nos-cifar100``: the CIFAR-10
    recipe (:class:`NOSRetrainPreset`) with weight decay 5e-4."""

    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.25, lr_min=0.0, momentum=0.9,
                                                                     weight_decay=5e-4))


@dataclass(frozen=True)
class NOSImageNetRetrainPreset(RetrainPreset):
    """NOS evaluation on ImageNet (Appendix A.2.2, Sec. 4.3), recipe ``nos-imagenet``: SGD for 300
    epochs, batch 512, learning rate 0.25 reduced to 0 by a linear schedule, 5 warm-up epochs
    (Goyal et al.; here per epoch), auxiliary tower with loss weight 0.4 (14 cells, 48 initial
    channels, 224x224: ``--network-options`` / ``--image-size``).  Left open by the paper, taken
    from PC-DARTS's ImageNet training script (Xu et al., ICLR 2020, ``train_imagenet.py``), whose
    linear schedule with 5 warm-up epochs NOS's is: momentum 0.9, weight decay 3e-5, label
    smoothing 0.1, gradient clip 5, no drop-path; no cutout."""

    epochs: int = 300
    batch_size: int = 512
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.25, lr_min=0.0, momentum=0.9,
                                                                     weight_decay=3e-5))
    lr_schedule: str = "linear"
    warmup_epochs: int = 5
    label_smoothing: float = 0.1
    auxiliary_weight: float = 0.4
    drop_path: float = 0.0
    cutout: int = 0


@dataclass(frozen=True)
class DartsImageNetRetrainPreset(RetrainPreset):
    """DARTS evaluation on ImageNet, mobile setting (Liu et al. 2019, Sec. 3.3 / A.2; recipe
    ``darts-imagenet``): 250 epochs, batch 128, SGD 0.1 decayed by 0.97 after every epoch, weight
    decay 3e-5; from DARTS's ``train_imagenet.py``: momentum 0.9, label smoothing 0.1, auxiliary
    weight 0.4, gradient clip 5, no drop-path, no cutout (14 cells, 48 initial channels, 224x224:
    ``--network-options`` / ``--image-size``)."""

    epochs: int = 250
    batch_size: int = 128
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.1, lr_min=0.0, momentum=0.9,
                                                                     weight_decay=3e-5))
    lr_schedule: str = "step"
    step_size: int = 1
    step_gamma: float = 0.97
    label_smoothing: float = 0.1
    auxiliary_weight: float = 0.4
    drop_path: float = 0.0
    cutout: int = 0


@dataclass(frozen=True)
class TrioNetPreset(SPOSPreset):
    """TrioNet supernet training and search (Pi et al., BMVC 2021, Sec. 3.3-3.5, Appendix A).

    From the paper (Appendix A, ImageNet): SGD with learning rate 0.1 at batch 256 -- here
    0.1 x 64/256 = 0.025 for the default batch of 64 (linear scaling rule) --, Nesterov
    momentum 0.9, weight decay 8e-5 "only added to the largest model" (``decay_biggest_only``:
    on exactly the weight slices the sandwich's biggest sub-network uses), label smoothing, 540 epochs of
    which 10 are warm-up, gamma = 0 in each block's last BN (in the space); 10k training
    images held out for the evolutionary search (here the engine's ``train_portion``
    split).  Hierarchical Sampling (Sec. 3.4, Eq. 4), the Sandwich rule with the smallest, the biggest and 2 random
    sub-networks per step (Sec. 3.4), Multi-Head Sharing (Sec. 3.5, Alg. 1).

    Left open by the paper (attnas choices): the label-smoothing value 0.1 (Szegedy et al.),
    the cosine decay to 0 after the warm-up, no gradient clipping, and the evolution's
    settings.  attnas's defaults (issue 19) are sized for a CPU and the small default space
    (:mod:`attnas.spaces.trionet`, ``size`` "small"): population 20, 3 generations, top-k 5,
    10 mutations + 10 crossovers (at most 80 candidates, one line per generation), mutation
    probability 0.1, BN recalibration on up to 20,000 training images.  SPOS's settings, for
    a paper-size run: ``{"population": 50, "generations": 20, "top_k": 10, "mutations": 25,
    "crossovers": 25}`` (1,050 candidates: ~3.6 h at 12 s per candidate for the paper-size
    supernet on 8x8 digits on 2 CPU cores).
    Ablations: ``sampling`` "uniform", ``sandwich`` false, ``sharing`` "prefix".
    Elastic depth (Appendix A) is the space's (``depth:<s>``; the paper's depths at size
    "paper"): sampled uniformly, the sandwich's extremes at the least / greatest depths.
    Budgets as the paper's: ``flops_budget`` in FLOPs = 2 x MACs (TrioNet-A: 2e9)."""

    epochs: int = 540
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(
        lr=0.1 * 64 / 256, lr_min=0.0, momentum=0.9, weight_decay=8e-5, grad_clip=0.0))
    lr_schedule: str = "cosine"
    nesterov: bool = True
    warmup_epochs: int = 10
    label_smoothing: float = 0.1
    sampling: str = "hierarchical"
    sandwich: bool = True
    sandwich_random: int = 2
    sharing: str = "multihead"
    decay_biggest_only: bool = True
    population: int = 20
    generations: int = 3
    top_k: int = 5
    mutations: int = 10
    crossovers: int = 10
    #: no choice blocks to checkpoint; SPOS's "auto" would only recompute the stem
    recompute: str = "none"


@dataclass(frozen=True)
class TrioNetRetrainPreset(RetrainPreset):
    """TrioNet retraining from scratch (Pi et al., BMVC 2021, Appendix A), recipe ``trionet``:
    "we change the training epochs to 130, and keep other hyper-parameters not changed" from the
    supernet training -- SGD with Nesterov momentum 0.9, weight decay 8e-5, label smoothing,
    10 warm-up epochs, learning rate 0.1 for batch 256, no dropout.  The paper's batch 256 is
    scaled to attnas's batch 64 by the linear scaling rule (Goyal et al.): learning rate
    0.1 x 64/256 = 0.025.  Left open by the paper (the choices of :class:`TrioNetPreset`): label
    smoothing 0.1, cosine decay to 0 after the warm-up, no gradient clipping; no auxiliary head,
    drop-path or cutout (the paper's "simple ResNet-like training recipe" and "weak data
    augmentation", Sec. 4.2)."""

    epochs: int = 130
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(
        lr=0.1 * 64 / 256, lr_min=0.0, momentum=0.9, weight_decay=8e-5, grad_clip=0.0))
    lr_schedule: str = "cosine"
    warmup_epochs: int = 10
    nesterov: bool = True
    label_smoothing: float = 0.1
    auxiliary_weight: float = 0.0
    drop_path: float = 0.0
    cutout: int = 0


@dataclass(frozen=True)
class TrioNetFinetunePreset(TrioNetRetrainPreset):
    """TrioNet on small datasets (Appendix A), recipe ``trionet-finetune`` (``attnas train
    --init-from SEARCH_RUN``): the searched model takes its weights from the supernet and is
    fine-tuned "for 1k iterations with a base learning rate 1e-3 with batchsize 128"; the
    small-dataset recipe's weight decay 1e-3.  The paper's batch 128 is scaled to attnas's batch
    64 by the linear scaling rule: learning rate 1e-3 x 64/128 = 5e-4.  1k iterations of 128
    images are 128,000 images, about 16 epochs of Stanford Cars' 8,144 training images (the first
    of the paper's five datasets): ``epochs`` 16; for N training images give ``--epochs``
    round(128000 / N).  Left open by the paper: the schedule of the fine-tuning (cosine to 0, no
    warm-up: a 10-epoch warm-up would fill most of it); Nesterov momentum and label smoothing 0.1
    as the retraining (:class:`TrioNetRetrainPreset`).  Not applied: the small-dataset recipe's
    dropout 0.1, attention-dropout 0.1 and "strong color jittering" (TrioNet's networks have no
    dropout layers here, and the in-memory augmentation has no colour jitter; streamed image
    folders jitter colour in their workers)."""

    epochs: int = 16
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(
        lr=1e-3 * 64 / 128, lr_min=0.0, momentum=0.9, weight_decay=1e-3, grad_clip=0.0))
    warmup_epochs: int = 0


PRESETS: dict[str, Any] = {
    "darts": DartsPreset(),
    "random": RandomPreset(),
    "itnas": ITNASPreset(),
    "spos": SPOSPreset(),
    "entrannas": EnTranNASPreset(),
    "retrain": RetrainPreset(),
    "nos": NOSPreset(),
    "teacher": TeacherPreset(),
    "trionet": TrioNetPreset(),
}


#: the retraining recipes of ``attnas train`` (``--recipe NAME``; ``darts`` is also :data:`PRESETS`'s "retrain")
RETRAIN_RECIPES: dict[str, RetrainPreset] = {
    "darts": RetrainPreset(),
    "darts-imagenet": DartsImageNetRetrainPreset(),
    "nos": NOSRetrainPreset(),
    "nos-cifar100": NOSCifar100RetrainPreset(),
    "nos-imagenet": NOSImageNetRetrainPreset(),
    "trionet": TrioNetRetrainPreset(),
    "trionet-finetune": TrioNetFinetunePreset(),
}
#: the recipe that retrains an architecture found by a method (any other method: ``darts``) ...
METHOD_RECIPES: dict[str, str] = {"nos": "nos", "trionet": "trionet"}
#: ... and the one that fine-tunes it from inherited weights (``attnas train --init-from``)
FINETUNE_RECIPES: dict[str, str] = {"trionet": "trionet-finetune"}
DEFAULT_RECIPE = "darts"
#: the recipe a method's paper uses on another kind of data (:func:`attnas.data.datasets.dataset_family`:
#: "cifar100", or "imagenet" for image folders and shards -- ImageNet-scale data); the method's own
#: recipe (or darts) elsewhere.  TrioNet's own recipe is already its ImageNet one.
DATASET_RECIPES: dict[tuple[str, str], str] = {
    ("nos", "cifar100"): "nos-cifar100", ("nos", "imagenet"): "nos-imagenet", ("darts", "imagenet"): "darts-imagenet"}


def retrain_recipe(name: str) -> RetrainPreset:
    """The retraining recipe ``name`` (:data:`RETRAIN_RECIPES`); a ConfigError naming the known ones."""
    try:
        return RETRAIN_RECIPES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown recipe {name!r}; expected one of {sorted(RETRAIN_RECIPES)}") from None


def recipe_for_method(method: Any, fine_tune: bool = False, family: str | None = None) -> str:
    """The name of the recipe that retrains (``fine_tune``: fine-tunes from inherited weights)
    an architecture found by ``method`` (None or a method without its own recipe: ``darts``) on data
    of ``family`` (:data:`DATASET_RECIPES`; None: CIFAR-10-like)."""
    if not isinstance(method, str):  # None, or whatever an architecture file's meta holds
        method = None
    if fine_tune and method in FINETUNE_RECIPES:
        return FINETUNE_RECIPES[method]
    own = METHOD_RECIPES.get(method, DEFAULT_RECIPE)
    return DATASET_RECIPES.get((own, family), own)


def register_preset(name: str, preset: Any) -> None:
    """Register ``preset`` (a frozen dataclass instance) as the defaults of method ``name``
    (a strategy declares its preset beside it: :func:`attnas.strategies.base.register_strategy`)."""
    if not hasattr(preset, "__dataclass_fields__"):
        raise ConfigError(f"the preset of '{name}' must be a dataclass instance, got {type(preset).__name__}")
    if name in PRESETS and PRESETS[name] != preset:
        raise ConfigError(f"a different preset is already registered as '{name}'")
    PRESETS[name] = preset


def get_preset(method: str) -> Any:
    try:
        return PRESETS[method]
    except KeyError:
        raise ConfigError(f"unknown method '{method}'; expected one of {sorted(PRESETS)}") from None


#: preset fields that may be negative (every other number of a preset is a count, a rate, a
#: size or a weight: non-negative; every float must be finite)
SIGNED_FIELDS = frozenset({"beta_init"})


def override(preset: Any, options: dict[str, Any], _prefix: str = "") -> Any:
    """``preset`` with fields replaced from ``options`` (nested dataclasses take dicts).

    Every value is checked against the field's declared type before it is used: an unknown
    name, a string for a number, a negative learning rate or a non-finite float is a one-line
    :class:`ConfigError` naming the option (``option 'weights.lr' ... got -1``)."""
    if not isinstance(options, dict):
        raise ConfigError(f"options for {type(preset).__name__} must be a JSON object, got {options!r}")
    known = {f.name: f for f in fields(preset)}
    hints = _type_hints(type(preset))
    changes = {}
    for key, value in options.items():
        if key not in known:
            raise ConfigError(f"unknown option '{_prefix}{key}' for {type(preset).__name__}; "
                              f"expected one of {sorted(known)}")
        current = getattr(preset, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise ConfigError(f"option '{_prefix}{key}' of {type(preset).__name__} must be a JSON object "
                                  f"of {sorted(f.name for f in fields(current))}, got {value!r}")
            value = override(current, value, f"{_prefix}{key}.")
        else:
            value = _checked(value, hints.get(key, Any), f"{_prefix}{key}", type(preset).__name__,
                             key in SIGNED_FIELDS)
        changes[key] = value
    return replace(preset, **changes)


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is not checked
        return {}


def _checked(value: Any, hint: Any, label: str, owner: str, signed: bool = False) -> Any:
    """``value`` checked (and lists made tuples) against the type ``hint`` of option ``label``."""
    import math
    import types
    import typing

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"option '{label}' of {owner} must be {expected}, got {value!r}")

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        for a in others:
            try:
                return _checked(value, a, label, owner, signed)
            except ConfigError:
                continue
        if len(others) == 1:
            return _checked(value, others[0], label, owner, signed)  # its own message
        raise bad(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        if value < 0 and not signed:
            raise bad("a non-negative integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        if value < 0 and not signed:
            raise bad("a non-negative number")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_checked(v, args[0], f"{label}[{i}]", owner, signed) for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise bad(f"a list of {len(args)} values")
        return tuple(_checked(v, a, f"{label}[{i}]", owner, signed) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise bad("a JSON object")
        return value
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        return list(value)
    return value


def to_dict(obj: Any) -> Any:
    """A preset as plain JSON-able data."""
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
