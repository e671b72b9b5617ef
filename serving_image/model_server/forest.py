"""A compiled predictor for the trained HistGradientBoosting model: its trees as straight Python code.

scikit-learn's `predict_proba` pays about half a millisecond of fixed cost per call (input checks,
then one Python-level call per tree), whatever the number of rows. For the one-row requests a
serving pod mostly gets, that fixed cost is the whole cost. Here the forest becomes one generated
function with every tree as nested `if`/`else` on local variables: one row costs tens of
microseconds and needs neither scikit-learn nor a C compiler at serving time.

Two steps, so the model artifact carries data, never code:
- `export_forest` (at training time) turns the fitted estimator into a JSON document: the baseline,
  the link function, and per tree the node arrays (feature, threshold, where missing values go,
  children, leaf values). `verify_forest` then compiles it and compares it with the estimator's
  own predictions on the holdout; train.py ships the document only when they agree within 1e-9.
- `compile_forest` (at load time in `serve`) turns the document into Python source, compiles it,
  and returns a `CompiledForest` whose `predict_rows` gives what `LoadedModel.predict` gives.

Semantics follow scikit-learn's predictor (`sklearn/ensemble/_hist_gradient_boosting/_predictor.pyx`):
a row goes left when its value is <= the node's threshold, and a missing value (NaN) goes the way
`missing_go_to_left` says. Models this cannot reproduce exactly (categorical splits, multiclass,
losses other than squared error and binary log-loss) are not exported; `serve` then uses
scikit-learn for every batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the compiled forest needs neither numpy nor scikit-learn at run time
    from model_server.estimator import Estimator, FloatMatrix

FORMAT = "modelops.forest/1"
LINKS = ("identity", "logistic")
# CPython's tokenizer refuses more than 100 indentation levels; stay well below.
MAX_DEPTH = 80
# A generated function is about one line per node; beyond this, compiling costs more than it saves.
MAX_NODES = 400_000
# Largest gap between the compiled forest and scikit-learn on the holdout for the export to ship.
TOLERANCE = 1e-9

Row = Sequence[float]


class ForestError(ValueError):
    """The forest document cannot be compiled; the message says which field is wrong."""


@dataclass(frozen=True)
class CompiledForest:
    n_features: int
    n_trees: int
    n_nodes: int
    link: str
    predict_rows: Callable[[Sequence[Row]], list[float]]


def export_forest(estimator: Estimator) -> tuple[dict[str, Any] | None, str]:
    """(document, "") for a supported fitted estimator, else (None, why it is not supported)."""
    predictors = getattr(estimator, "_predictors", None)
    baseline = getattr(estimator, "_baseline_prediction", None)
    if predictors is None or baseline is None:
        return None, f"{type(estimator).__name__} is not a fitted HistGradientBoosting model"
    if getattr(estimator, "n_trees_per_iteration_", 1) != 1:
        return None, "only one tree per iteration (binary classification or regression) is compiled"
    loss = type(getattr(estimator, "_loss", None)).__name__
    link = {"HalfSquaredError": "identity", "HalfBinomialLoss": "logistic"}.get(loss)
    if link is None:
        return None, f"loss {loss} is not compiled (only squared error and binary log-loss)"
    trees = []
    for (predictor,) in predictors:
        nodes = predictor.nodes
        if bool(nodes["is_categorical"].any()):
            return None, "categorical splits are not compiled"
        trees.append(
            {
                "feature": [int(v) for v in nodes["feature_idx"]],
                "threshold": [float(v) for v in nodes["num_threshold"]],
                "missing_left": [bool(v) for v in nodes["missing_go_to_left"]],
                "left": [int(v) for v in nodes["left"]],
                "right": [int(v) for v in nodes["right"]],
                "is_leaf": [bool(v) for v in nodes["is_leaf"]],
                "value": [float(v) for v in nodes["value"]],
            }
        )
    doc = {
        "format": FORMAT,
        "n_features": int(estimator.n_features_in_),
        "link": link,
        "baseline": float(baseline.ravel()[0]),
        "trees": trees,
    }
    return doc, ""


def verify_forest(
    doc: dict[str, Any], reference: Callable[[FloatMatrix], Sequence[float]], rows: FloatMatrix
) -> float:
    """The largest absolute difference between the compiled forest and `reference` over `rows`."""
    forest = compile_forest(doc)
    as_lists = [list(map(float, row)) for row in rows]
    if not as_lists:
        return 0.0
    got = forest.predict_rows(as_lists)
    want = reference(rows)
    return max(abs(a - float(b)) for a, b in zip(got, want, strict=True))


@dataclass(frozen=True)
class ForestHeader:
    n_features: int
    link: str
    baseline: float
    trees: list[Any]
    n_nodes: int


def read_header(doc: Any) -> ForestHeader:
    """The header fields of a document written by `export_forest`; ForestError names a bad one."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ForestError(f"not a {FORMAT} document")
    try:
        n_features = int(doc["n_features"])
        link = str(doc["link"])
        baseline = float(doc["baseline"])
        trees = list(doc["trees"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ForestError(f"malformed header field: {exc}") from None
    if link not in LINKS:
        raise ForestError(f"link {link!r} is not one of {list(LINKS)}")
    if n_features < 1:
        raise ForestError("n_features must be at least 1")
    n_nodes = sum(len(t.get("value", ())) for t in trees if isinstance(t, dict))
    if n_nodes > MAX_NODES:
        raise ForestError(f"{n_nodes} nodes exceed the {MAX_NODES}-node limit for compiling")
    return ForestHeader(n_features, link, baseline, trees, n_nodes)


def compile_forest(doc: Any) -> CompiledForest:
    """Compile a document written by `export_forest`; ForestError names what is malformed."""
    h = read_header(doc)
    source = _source(h.n_features, h.link, h.baseline, h.trees)
    # repr() of a float is a Python literal, except inf and nan: name them.
    namespace: dict[str, Any] = {"exp": math.exp, "inf": math.inf, "nan": math.nan}
    exec(compile(source, "<modelops compiled forest>", "exec"), namespace)
    return CompiledForest(
        n_features=h.n_features,
        n_trees=len(h.trees),
        n_nodes=h.n_nodes,
        link=h.link,
        predict_rows=namespace["predict_rows"],
    )


def _source(n_features: int, link: str, baseline: float, trees: list[Any]) -> str:
    names = [f"x{i}" for i in range(n_features)]
    lines = [
        "def predict_rows(rows):",
        "    out = []",
        "    append = out.append",
        "    for row in rows:",
        f"        {', '.join(names)}{',' if n_features == 1 else ''} = row",
        f"        s = {baseline!r}",
    ]
    for index, tree in enumerate(trees):
        _emit_tree(lines, tree, index, n_features)
    if link == "logistic":
        # scipy's expit, without overflow for large |s|
        lines += [
            "        if s >= 0.0:",
            "            append(1.0 / (1.0 + exp(-s)))",
            "        else:",
            "            e = exp(s)",
            "            append(e / (1.0 + e))",
        ]
    else:
        lines.append("        append(s)")
    lines.append("    return out")
    return "\n".join(lines) + "\n"


def _emit_tree(lines: list[str], tree: Any, index: int, n_features: int) -> None:
    for kind, depth, feature, number, missing_left in walk_tree(tree, index, n_features):
        indent = "    " * (depth + 2)
        if kind == "leaf":
            lines.append(f"{indent}s += {number!r}")
        elif kind == "else":
            lines.append(f"{indent}else:")
        else:
            # NaN compares False with everything, so without `x != x` a missing value goes right.
            x = f"x{feature}"
            cond = f"{x} <= {number!r} or {x} != {x}" if missing_left else f"{x} <= {number!r}"
            lines.append(f"{indent}if {cond}:")


# One step of a tree in source order: ("if", depth, feature, threshold, missing_left) opens the
# left subtree, ("else", depth, 0, 0.0, False) the right one, ("leaf", depth, 0, value, False)
# adds a leaf's value. Every code generator (this module's Python, native.py's C) walks the same.
Step = tuple[Literal["if", "else", "leaf"], int, int, float, bool]


def walk_tree(tree: Any, index: int, n_features: int) -> list[Step]:
    """A tree's nodes in depth-first source order; ForestError names a malformed node."""
    where = f"tree {index}"
    try:
        feature = tree["feature"]
        threshold = tree["threshold"]
        missing_left = tree["missing_left"]
        left = tree["left"]
        right = tree["right"]
        is_leaf = tree["is_leaf"]
        value = tree["value"]
    except (KeyError, TypeError):
        raise ForestError(
            f"{where}: needs feature, threshold, missing_left, left, right, is_leaf, value"
        ) from None
    size = len(value)
    if size == 0 or any(len(a) != size for a in (feature, threshold, missing_left, left, right, is_leaf)):
        raise ForestError(f"{where}: node arrays are empty or of different lengths")
    steps: list[Step] = []
    # Iterative depth-first walk (node, depth); `else` markers go on the same stack.
    stack: list[tuple[int, int, bool]] = [(0, 0, False)]
    seen = 0
    while stack:
        node, depth, is_else = stack.pop()
        if is_else:
            steps.append(("else", depth, 0, 0.0, False))
            continue
        seen += 1
        if seen > size:
            raise ForestError(f"{where}: the children links form a cycle")
        if depth > MAX_DEPTH:
            raise ForestError(f"{where}: deeper than {MAX_DEPTH} levels")
        if not 0 <= node < size:
            raise ForestError(f"{where}: child index {node} is outside 0..{size - 1}")
        if is_leaf[node]:
            steps.append(("leaf", depth, 0, float(value[node]), False))
            continue
        f = int(feature[node])
        if not 0 <= f < n_features:
            raise ForestError(f"{where}: feature index {f} is outside 0..{n_features - 1}")
        steps.append(("if", depth, f, float(threshold[node]), bool(missing_left[node])))
        # Pushed in reverse: left subtree, then `else:`, then right subtree.
        stack.append((int(right[node]), depth + 1, False))
        stack.append((node, depth, True))
        stack.append((int(left[node]), depth + 1, False))
    return steps
