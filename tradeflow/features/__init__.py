"""Feature engineering: pure functions from curated candles (and order books) to a feature matrix.

numpy, pandas and scipy only: no Prefect, no MLflow. :mod:`~tradeflow.features.indicators`
holds the indicator formulas, :mod:`~tradeflow.features.spec` the hashed parameters, and
:mod:`~tradeflow.features.build` assembles the matrix.
"""

from tradeflow.features.build import build_feature_matrix, feature_columns, feature_names
from tradeflow.features.spec import FEATURE_CODE_VERSION, FeatureSpec

__all__ = ["FEATURE_CODE_VERSION", "FeatureSpec", "build_feature_matrix", "feature_columns", "feature_names"]
