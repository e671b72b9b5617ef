"""The model libraries for real, in this process: trees compiled to C with gcc, ONNX exports, a
team's training script run as SageMaker runs it, every model format served. Too heavy for the unit
tier's edit loop (`make check`); `make test` runs them beside the e2e lanes with the rest of the
integration tier. The serving image's package is imported from serving_image/, as in tests/unit/serving."""

from tests.unit.serving.conftest import SERVING_IMAGE  # noqa: F401 (puts serving_image/ on sys.path)
