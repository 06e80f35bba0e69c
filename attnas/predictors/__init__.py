"""Performance predictors: TNASP (Lu et al., 2021), MLP and GCN baselines, self-evolution,
predictor-guided search.

Quick use::

    from attnas.predictors import encoder_for, get_predictor, TNASP, SelfEvolution
    enc = encoder_for("nb201")
    pred = TNASP(enc, seed=0).fit(train_archs, train_acc)
    pred = get_predictor("mlp", enc, 0, epochs=50)     # by name, a preset field changed
    scores = pred.predict(candidate_archs)

    from attnas.predictors import run_kendall
    run_kendall("nb201", train_size=78, seed=0, predictor="tnasp", self_evolution=True)
"""
from attnas.predictors.baselines import GCNConfig, GCNPredictor, MLPConfig, MLPPredictor
from attnas.predictors.encoders import (ArchEncoder, ChainEncoder, EdgeCellEncoder, EncodedBatch, NB101Encoder,
                                        encoder_for, normalized_laplacian, positional_encoding)
from attnas.predictors.guided_search import (InheritedWeightsEvaluator, SearchResult, TrainingEvaluator,
                                             nb201_evaluator, predictor_guided_search, random_search,
                                             regularized_evolution, sample_pool)
from attnas.predictors.kendall import load_bench_data, run_kendall, split_indices
from attnas.predictors.registry import get_predictor, predictor_names, register_predictor
from attnas.predictors.self_evolution import SelfEvolution, SelfEvolutionConfig, lagrangian
from attnas.predictors.tnasp import TNASP, TNASPConfig, TNASPNet
from attnas.predictors.train import FitConfig, NeuralPredictor

__all__ = [
    "ArchEncoder", "ChainEncoder", "EdgeCellEncoder", "NB101Encoder", "EncodedBatch", "encoder_for",
    "normalized_laplacian", "positional_encoding",
    "TNASP", "TNASPConfig", "TNASPNet", "MLPPredictor", "MLPConfig", "GCNPredictor", "GCNConfig",
    "SelfEvolution", "SelfEvolutionConfig", "lagrangian",
    "FitConfig", "NeuralPredictor", "get_predictor", "predictor_names", "register_predictor",
    "run_kendall", "load_bench_data", "split_indices",
    "predictor_guided_search", "random_search", "regularized_evolution", "SearchResult", "nb201_evaluator",
    "TrainingEvaluator", "InheritedWeightsEvaluator", "sample_pool",
]
