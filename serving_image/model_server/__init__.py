"""The serving image's Python package: the `train` and `serve` programs of the SageMaker container
contract, used as the SageMaker training image and as the EKS serving image.

Dependencies are the standard library, numpy, scikit-learn and joblib (serving_image/requirements.txt), plus
XGBoost and LightGBM, imported only for models of those algorithms (algorithms.py, artifact.py).
"""
