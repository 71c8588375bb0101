"""prunelimit: the fundamental limit of network pruning, predicted and measured.

Conventions used everywhere: the pruning ratio is the fraction of weights KEPT (k / D);
sparsity is 1 - ratio. Losses are means over examples; eps is a loss increase.

The public API, in the order one meets it:

- ``LimitStudy(model, StudyData(...), recipe=..., curvature="ggn" | "abs" | "flat",
  store=folder).run()`` -> ``LimitReport``: the predicted limit with its bounds, the actual
  one-shot and retrained limits, every stage stored resumably (``prunelimit.study``);
  ``.estimate()`` -> ``CostEstimate``: what the stages not yet stored will cost here.
  ``StudyData.from_batches`` takes DataLoaders.
- ``Recipe``, ``train``, ``evaluate`` (``prunelimit.training``); ``DataSpec``, ``load_views``,
  ``load_dataset`` (offline data sets); ``build_model``, ``prunable_parameters``.
- Curvature as linear operators: ``HessianOperator``, ``GGNOperator``, ``dense_hessian``,
  ``dense_ggn`` (``prunelimit.curvature``); Krylov methods ``lanczos``, ``slq``,
  ``hutchinson_trace``, ``hutchpp_trace`` (``prunelimit.lanczos``).
- The limit: ``predict_limit``, ``prediction_spread``, ``certified_limit``, ``loss_tolerance``,
  ``projection_distances``, ``quadratic_limit`` (``prunelimit.limit``, ``prunelimit.certified``).
- Pruning: ``global_magnitude_masks``, ``one_shot_sweep``, ``masked``, ``frozen_mask``; the
  baselines ``smart_ratio_masks``, ``random_masks``, ``layerwise_magnitude_masks``
  (``prunelimit.pruning``), ``iterative_magnitude_pruning`` (``prunelimit.iterative``), and
  ``LimitStudy.baseline`` / ``LimitStudy.imp`` for their limits; ``rescaled``
  (``prunelimit.rescaling``): a ReLU network with the same function and other magnitudes.
- Figures of a report: ``prunelimit.plots``; results on disk: ``Store``.
"""

from prunelimit.certified import CertifiedLimit, NotPositiveSemidefiniteError, certified_limit
from prunelimit.costs import CostEstimate
from prunelimit.curvature import GGNOperator, HessianOperator, dense_ggn, dense_hessian
from prunelimit.data import load_dataset
from prunelimit.lanczos import SLQResult, hutchinson_trace, hutchpp_trace, lanczos, slq
from prunelimit.limit import (
    LanczosSpread,
    LimitPrediction,
    loss_tolerance,
    predict_limit,
    prediction_spread,
    projection_distances,
    quadratic_limit,
)
from prunelimit.models import build_model, prunable_parameters
from prunelimit.pruning import frozen_mask, global_magnitude_masks, masked, one_shot_sweep
from prunelimit.report import LimitReport, Prediction, agreement
from prunelimit.store import Store
from prunelimit.study import (
    CertifiedSpec,
    HessianSpec,
    LimitStudy,
    PruningSpec,
    StudyData,
)
from prunelimit.training import Recipe, evaluate, train
from prunelimit.views import DataSpec, load_views

__version__ = "0.1.0"

__all__ = [
    "CertifiedLimit",
    "CertifiedSpec",
    "CostEstimate",
    "DataSpec",
    "GGNOperator",
    "HessianOperator",
    "HessianSpec",
    "LanczosSpread",
    "LimitPrediction",
    "LimitReport",
    "LimitStudy",
    "NotPositiveSemidefiniteError",
    "Prediction",
    "PruningSpec",
    "Recipe",
    "SLQResult",
    "Store",
    "StudyData",
    "agreement",
    "build_model",
    "certified_limit",
    "dense_ggn",
    "dense_hessian",
    "evaluate",
    "frozen_mask",
    "global_magnitude_masks",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos",
    "load_dataset",
    "load_views",
    "loss_tolerance",
    "masked",
    "one_shot_sweep",
    "predict_limit",
    "prediction_spread",
    "projection_distances",
    "prunable_parameters",
    "quadratic_limit",
    "slq",
    "train",
]
