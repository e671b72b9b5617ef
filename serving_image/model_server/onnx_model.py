"""ONNX models (`format: onnx`, model.onnx), read by onnxruntime: imported only for them.

The graph takes one float tensor input of shape [N, n_features] (the contract's rows, in
feature_columns order, NaN for a missing value; fed as float32, or float64 for a tensor(double)
input); other input signatures are refused when the model is loaded. `OnnxModel` gives it the
scikit-learn API the rest of the code calls: a classifier's `predict_proba` (n x k, in the model's
class order, `classes_`), a regressor's `predict` (n).

A classifier's probabilities are the output that is a ZipMap (a list of {label: probability},
skl2onnx's default) or a 2-D float tensor (skl2onnx with options {"zipmap": False}); an output
named like "prob" wins when there are several. Its class labels (`classes_`): the ZipMap's keys,
else the class list the graph's classifier nodes name (`classlabels_strings` / `classlabels_ints`,
read from the file: onnxruntime does not expose them), else None when the graph names none or
several different lists (script mode then reads the columns in modelops' class order, as for a
native XGBoost/LightGBM file).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model_server.errors import ModelLoadError
from model_server.estimator import Labels, Matrix

# The pods are small: onnxruntime's own thread pools stay at one thread each.
THREADS = 1
FLOAT_INPUTS: dict[str, type[np.floating[Any]]] = {"tensor(float)": np.float32, "tensor(double)": np.float64}
LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_ints", "classlabels_int64s")


def load_onnx(path: Path, *, classification: bool, n_features: int, threads: int = THREADS) -> OnnxModel:
    """An InferenceSession on the CPU over `path`; ModelLoadError when its signature is not the contract's."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    session = onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return OnnxModel(session, classification=classification, n_features=n_features, path=path)


def _describe(args: Any) -> list[str]:
    return [f"{a.name}: {a.type} {list(a.shape)}" for a in args]


class OnnxModel:
    """An ONNX graph with the scikit-learn API of `estimator.Classifier` / `Regressor`."""

    def __init__(self, session: Any, *, classification: bool, n_features: int, path: Path) -> None:
        self.session = session
        self.classification = classification
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in FLOAT_INPUTS or len(inputs[0].shape) != 2:
            raise ModelLoadError(
                f"{path.name} takes inputs {_describe(inputs)}; expected one float tensor input of shape "
                "[N, n_features] (skl2onnx: initial_types=[('X', FloatTensorType([None, n_features]))]); "
                "categorical text columns are not supported for ONNX"
            )
        self.input_name: str = inputs[0].name
        self.input_type: type[np.floating[Any]] = FLOAT_INPUTS[inputs[0].type]
        width = inputs[0].shape[1]
        self.n_features_in_: int = width if isinstance(width, int) else n_features
        outputs = session.get_outputs()
        self.output_name, self.zipmap = _pick_output(outputs, classification, path)
        self.classes_: list[Any] | None = None
        if classification:
            self.classes_ = self._zipmap_keys() if self.zipmap else graph_class_labels(path.read_bytes())

    def _zipmap_keys(self) -> list[Any]:
        probe = np.zeros((1, self.n_features_in_), dtype=self.input_type)
        (maps,) = self.session.run([self.output_name], {self.input_name: probe})
        return list(maps[0])

    def fit(self, X: Matrix, y: Labels) -> object:
        raise TypeError("an ONNX model loaded from model.onnx is not refitted; train a new one")

    def _run(self, X: Matrix) -> Any:
        rows = np.asarray(X, dtype=self.input_type)
        if rows.ndim != 2 or rows.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {rows.shape[-1] if rows.ndim else 0} features, but the model expects {self.n_features_in_}"
            )
        return self.session.run([self.output_name], {self.input_name: rows})[0]

    def predict_proba(self, X: Matrix) -> NDArray[np.float64]:
        if not self.classification:
            raise AttributeError("a regression model has no predict_proba")
        out = self._run(X)
        if self.zipmap:
            keys = self.classes_ or []
            return np.asarray([[row[k] for k in keys] for row in out], dtype=np.float64).reshape(
                len(out), len(keys)
            )
        return np.asarray(out, dtype=np.float64)

    def predict(self, X: Matrix) -> NDArray[np.float64] | NDArray[np.int64]:
        if self.classification:
            return np.asarray(np.argmax(self.predict_proba(X), axis=1), dtype=np.int64)
        values = np.asarray(self._run(X), dtype=np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            return values[:, 0]
        return values


def _pick_output(outputs: Any, classification: bool, path: Path) -> tuple[str, bool]:
    """(name, is a ZipMap) of the output holding the probabilities (classifier) or the value (regressor)."""
    tensors = [o for o in outputs if o.type in FLOAT_INPUTS]
    if classification:
        zipmaps = [o for o in outputs if str(o.type).startswith("seq(map(")]
        found = zipmaps + [o for o in tensors if len(o.shape) == 2]
        wanted = "probabilities: a ZipMap (seq(map(...))) or a float tensor [N, n_classes]"
    else:
        # [N], or [N, 1] (skl2onnx's regressors), or [N, d] with d not fixed in the graph
        found = [o for o in tensors if len(o.shape) == 1 or (len(o.shape) == 2 and o.shape[1] in (1, None))]
        found += [o for o in tensors if len(o.shape) == 2 and isinstance(o.shape[1], str)]
        wanted = "the value: a float tensor [N] or [N, 1]"
    named = [o for o in found if "prob" in o.name.lower()] if classification else []
    chosen = named[:1] or found[:1]
    if not chosen:
        raise ModelLoadError(f"{path.name} has outputs {_describe(outputs)}; expected one with {wanted}")
    output = chosen[0]
    return str(output.name), str(output.type).startswith("seq(map(")


# The ONNX protobuf's field numbers used here (onnx.proto): ModelProto.graph, GraphProto.node,
# NodeProto.attribute, AttributeProto.name / ints / strings.
_GRAPH, _NODE, _ATTRIBUTE, _NAME, _INTS, _STRINGS = 7, 1, 5, 1, 8, 9


def graph_class_labels(model: bytes) -> list[Any] | None:
    """The class labels the graph's classifier nodes name, when they all name the same list."""
    lists: list[list[Any]] = []
    for field, graph in _fields(memoryview(model)):
        if field != _GRAPH or not isinstance(graph, memoryview):
            continue
        for node_field, node in _fields(graph):
            if node_field != _NODE or not isinstance(node, memoryview):
                continue
            for attr_field, attribute in _fields(node):
                if attr_field == _ATTRIBUTE and isinstance(attribute, memoryview):
                    labels = _labels(attribute)
                    if labels and labels not in lists:
                        lists.append(labels)
    return lists[0] if len(lists) == 1 else None


def _labels(attribute: memoryview) -> list[Any] | None:
    fields = list(_fields(attribute))
    names = [
        bytes(v).decode("utf-8", "replace") for f, v in fields if f == _NAME and isinstance(v, memoryview)
    ]
    if not names or names[0] not in LABEL_ATTRIBUTES:
        return None
    if names[0] == "classlabels_strings":
        return [bytes(v).decode("utf-8") for f, v in fields if f == _STRINGS and isinstance(v, memoryview)]
    ints: list[int] = []
    for f, v in fields:
        if f != _INTS:
            continue
        packed = list(_varints(v)) if isinstance(v, memoryview) else [v]
        ints += [x - (1 << 64) if x >= 1 << 63 else x for x in packed]
    return ints


def _varints(data: memoryview) -> Iterator[int]:
    """The values of a packed repeated varint field."""
    pos = 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        yield value


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a protobuf message: a varint as int, a length-delimited field as a
    view of its bytes (not copied), a fixed-width field as its raw integer."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise ValueError(f"protobuf wire type {wire} is not read here")
        yield key >> 3, value
