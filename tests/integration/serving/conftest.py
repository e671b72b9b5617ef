"""The serving image's package, importable from serving_image/ as in the unit tests."""

from tests.unit.serving.conftest import SERVING_IMAGE  # noqa: F401  (puts it on sys.path)
