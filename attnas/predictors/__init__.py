"""Performance predictors: TNASP (Lu et al., 2021), MLP and GCN baselines, self-evolution,
predictor-guided search.

Quick use::

    from attnas.predictors import encoder_for, TNASP, SelfEvolution
    enc = encoder_for("nb201")
    pred = TNASP(enc, seed=0).fit(train_archs, train_acc)
    scores = pred.predict(candidate_archs)

    from attnas.predictors import run_kendall
    run_kendall("nb201", train_size=78, seed=0, predictor="tnasp", self_evolution=True)
"""
from attnas.predictors.baselines import GCNConfig, GCNPredictor, MLPConfig, MLPPredictor
from attnas.predictors.encoders import (ArchEncoder, ChainEncoder, EdgeCellEncoder, EncodedBatch, NB101Encoder,
                                        encoder_for, normalized_laplacian, positional_encoding)
from attnas.predictors.guided_search import (SearchResult, TrainingEvaluator, nb201_evaluator,
                                             predictor_guided_search, random_search, regularized_evolution)
from attnas.predictors.self_evolution import SelfEvolution, SelfEvolutionConfig, lagrangian
from attnas.predictors.tnasp import TNASP, TNASPConfig, TNASPNet
from attnas.predictors.train import (FitConfig, NeuralPredictor, load_bench_data, make_predictor, run_kendall,
                                     split_indices)

__all__ = [
    "ArchEncoder", "ChainEncoder", "EdgeCellEncoder", "NB101Encoder", "EncodedBatch", "encoder_for",
    "normalized_laplacian", "positional_encoding",
    "TNASP", "TNASPConfig", "TNASPNet", "MLPPredictor", "MLPConfig", "GCNPredictor", "GCNConfig",
    "SelfEvolution", "SelfEvolutionConfig", "lagrangian",
    "FitConfig", "NeuralPredictor", "make_predictor", "run_kendall", "load_bench_data", "split_indices",
    "predictor_guided_search", "random_search", "regularized_evolution", "SearchResult", "nb201_evaluator",
    "TrainingEvaluator",
]
