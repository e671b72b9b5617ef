"""A scikit-learn random forest as C arrays and one loop, for forests too big to compile as code.

tl2cgen writes every node as an `if`: gcc's time grows with that code (trees.py's compile budget),
and a forest of unbounded trees on a large training set is far beyond it (100 trees on 16,000 rows:
168,672 nodes, 22-25 MB of C, 84 s or more at -O1). Here the same nodes are data: per node its
children, feature, threshold, where a missing value goes, and the leaf's class fractions, as
static arrays gcc only has to lay out, walked by one loop per tree. The answers are scikit-learn's,
step for step: the row is cast to float32 and compared with the float64 threshold
(`X[i, f] <= threshold`), a missing value takes `missing_go_to_left`, the leaf's value is divided
by its sum (DecisionTreeClassifier.predict_proba; computed here with numpy as there), the trees'
answers are added in the forest's order and the sum divided by the number of trees
(RandomForestClassifier.predict_proba, RandomForestRegressor.predict).

trees.build uses it for a random forest whose tl2cgen C exceeds the budget, and checks the library
against check.json like any other.

The walker (walker_generate, below the forest) is the same idea for any ensemble treelite reads
whose leaves are single numbers: XGBoost, LightGBM, HistGradientBoosting, a random forest
regressor. Its nodes come from treelite's field accessors (Model.get_tree_accessor(t).get_field:
node_type, cleft, cright, split_index, threshold, cmp, default_left, leaf_value; the header's
class_id, base_scores, postprocessor, sigmoid_alpha, average_tree_output), exact numbers rather
than dump_as_json's text (treelite 4.8.1 writes some LightGBM thresholds there as nothing at all:
`"threshold": ,`). Each tree is renumbered so that a split's two children are adjacent: a node is a
threshold, a slot and one word (left child << 1 | leaf), 16 bytes. Each row is first spread into
slots: per feature the value with a missing one as the infinity the comparison sends right, the
same with the one it sends left, and two flags (present, missing); a node reads the slot of its
default direction, so a step is one comparison, `child = left + 1 - (slot OP threshold)`, with no
test for NaN and no branch: a varied batch costs what a repeated row does (splits on an infinite
threshold, LightGBM's `inf` and XGBoost's `-inf` trivial splits, read a flag slot: _node). The
values are compared in the model's threshold type (float32 for XGBoost, whose inputs treelite casts too;
float64 for LightGBM, which compares doubles), after a cast to float32 for scikit-learn's decision
trees, as tl2cgen's entry point does. Every tree's walk takes its depth in steps (a leaf stays on
itself), after its shallowest leaf stopping early once all 8 interleaved walks are at leaves.
Leaves are added in the trees' order per class, then averaged (random forests), the base scores
added and the postprocessor applied (identity, sigmoid with its alpha, softmax), as tl2cgen's
main.c does. LightGBM's rules on a missing value: missing type NaN sends NaN the default way, as
treelite's default_left says; missing type None reads NaN as 0.0, which treelite encodes as
default_left = (0 <= threshold); missing type Zero (zero_as_missing) and categorical splits are
refused (lightgbm_refusal reads model.txt's decision_type bits), and tl2cgen's C, checked, is all
that is left for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_server.native import C_READ_ROW, _c_double

if TYPE_CHECKING:
    from model_server.artifact import ModelMetadata

SOURCE_FILE = "forest_arrays.c"
# Beyond this many nodes the arrays are not written either (168,672 nodes: 6.6 MB of C, built in
# ~5 s with tl2cgen's generation; 2,000,000 nodes are ~80 MB of C, about a minute): the library serves.
MAX_NODES = 2_000_000
GENERATOR = "modelops tree_arrays (scikit-learn's tree arrays)"

_LOOP = r"""
static void row(const double *x, double *out) {
    double acc[WIDTH];
    for (int k = 0; k < WIDTH; k++) acc[k] = 0.0;
    for (int t = 0; t < NT; t++) {
        int n = ROOT[t];
        while (LEFT[n] >= 0) {
            double v = (double)(float)x[FEATURE[n]];
            if (v != v) n = MISSING_LEFT[n] ? LEFT[n] : RIGHT[n];
            else n = v <= THRESHOLD[n] ? LEFT[n] : RIGHT[n];
        }
        for (int k = 0; k < WIDTH; k++) acc[k] += VALUE[(size_t)n * WIDTH + k];
    }
    for (int k = 0; k < WIDTH; k++) out[k] = acc[k] / NT;
}

static int predict_block(const double *X, Py_ssize_t n, double *out) {
    for (Py_ssize_t i = 0; i < n; i++) row(X + i * NF, out + i * WIDTH);
    return 0;
}
"""

# Requests of up to this many numbers (and answers of up to this many sums) are kept on the stack
# (16 KB each: a 100-row batch of 20 features fits), larger ones in the heap.
_STACK = "#define STACK_DOUBLES 2048"

# The entry point of every arrays library (the forest above, the walker below): the request's rows
# read once into one block of doubles (C_READ_ROW), then `predict_block` answers them all.
_ENTRY = r"""
int modelops_n_features(void) { return NF; }
int modelops_n_outputs(void) { return WIDTH; }

int modelops_predict(PyObject *rows, double *out) {
    double stack[STACK_DOUBLES];
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    double *X = stack;
    if ((size_t)n * NF > STACK_DOUBLES) {
        X = (double *)PyMem_Malloc(sizeof(double) * NF * (size_t)n);
        if (X == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    int status = 0;
    for (Py_ssize_t i = 0; i < n && status == 0; i++) {
        status = modelops_read_row(PyList_GET_ITEM(rows, i), i, X + i * NF);
    }
    if (status == 0) status = predict_block(X, n, out);
    if (X != stack) PyMem_Free(X);
    return status;
}
"""


class ArraysError(Exception):
    """The model is not a forest this module writes; the message says why."""


def supported(meta: ModelMetadata) -> bool:
    return meta.format == "sklearn" and meta.algorithm == "random_forest" and not meta.categorical_columns


def generate(forest: Any, meta: ModelMetadata, target: Path) -> tuple[list[str], int]:
    """Write the forest's C into `target`; ([its one source file], outputs per row)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    classifier = meta.task != "regression"
    wanted = RandomForestClassifier if classifier else RandomForestRegressor
    if type(forest) is not wanted or getattr(forest, "n_outputs_", 1) != 1:
        raise ArraysError(f"{type(forest).__name__} is not a single-output {wanted.__name__}")
    nodes = sum(int(e.tree_.node_count) for e in forest.estimators_)
    if nodes > MAX_NODES:
        raise ArraysError(f"the forest has {nodes:,} nodes, more than the {MAX_NODES:,} written as arrays")
    n_features = len(meta.feature_columns)
    if int(forest.n_features_in_) != n_features:
        raise ArraysError(
            f"the forest takes {forest.n_features_in_} features, metadata.json lists {n_features}"
        )
    if classifier:
        k = len(forest.classes_)
        first, width = (1, 1) if meta.task == "binary_classification" else (0, k)
        if (meta.task == "binary_classification") != (k == 2):
            raise ArraysError(f"a {meta.task} model with {k} classes")
    else:
        first, width = 0, 1
    left, right, feature, threshold, missing, value, roots = [], [], [], [], [], [], []
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        leaf = tree.children_left < 0
        if classifier:
            fractions = np.array(tree.value[:, 0, :], dtype=np.float64)
            normalizer = fractions.sum(axis=1)[:, np.newaxis]
            normalizer[normalizer == 0.0] = 1.0
            fractions /= normalizer  # DecisionTreeClassifier.predict_proba's arithmetic
        else:
            fractions = np.array(tree.value[:, 0, :1], dtype=np.float64)
        roots.append(offset)
        left += [int(c) + offset if c >= 0 else -1 for c in tree.children_left]
        right += [int(c) + offset if c >= 0 else -1 for c in tree.children_right]
        feature += [0 if is_leaf else int(f) for f, is_leaf in zip(tree.feature, leaf, strict=True)]
        threshold += [float(t) for t in tree.threshold]
        missing += [int(m) for m in tree.missing_go_to_left]
        value += [float(v) for row in fractions[:, first : first + width] for v in row]
        offset += int(tree.node_count)
    if any(f < 0 or f >= n_features for f in feature):
        raise ArraysError("a split names a feature the model does not have")
    lines = [
        "/* generated by model_server.tree_arrays from model.joblib; do not edit */",
        "#define PY_SSIZE_T_CLEAN",
        "#include <Python.h>",
        "#include <stddef.h>",
        "#include <math.h>",
        f"#define NF {n_features}",
        f"#define WIDTH {width}",
        f"#define NT {len(roots)}",
        _array("int", "ROOT", roots),
        _array("int", "LEFT", left),
        _array("int", "RIGHT", right),
        _array("int", "FEATURE", feature),
        _array("unsigned char", "MISSING_LEFT", missing),
        _array("double", "THRESHOLD", [_c_double(v) for v in threshold]),
        _array("double", "VALUE", [_c_double(v) for v in value]),
        C_READ_ROW,
        _STACK,
        _LOOP,
        _ENTRY,
    ]
    (target / SOURCE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [SOURCE_FILE], width


def _array(kind: str, name: str, values: list[Any]) -> str:
    body = ",".join(str(v) for v in values)
    return f"static const {kind} {name}[{len(values)}] = {{{body}}};"


# ---------------------------------------------------------------------------------------------
# The walker: any ensemble treelite reads whose leaves are single numbers (XGBoost, LightGBM, and
# scikit-learn's HistGradientBoosting), its nodes as one static array of structs, walked without a
# branch per node, several walks interleaved.

WALKER_SOURCE_FILE = "trees_walk.c"
WALKER = "modelops tree_arrays walker (treelite's nodes)"
LANES = 8
# -O3: gcc unrolls the lanes and keeps the walks in registers (multiclass LightGBM, 300 trees, 100-row
# batches: 8.2 us a row at -O1, 6.2 at -O2, 4.9 at -O3); the arrays are data, so it compiles in a second.
WALKER_CFLAGS = ("-O3", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off")
# treelite's Operator enum (treelite/enum/operator.h) and TreeNodeType (tree_node_type.h)
_OPERATORS = {2: "<", 3: "<=", 4: ">", 5: ">="}
_LEAF, _NUMERICAL = 0, 1
_POSTPROCESSORS = ("identity", "identity_multiclass", "sigmoid", "softmax")

_NODE = r"""
/* A node in 16 bytes (12 with float thresholds): a tree's two children are adjacent, so the node
   keeps its left child's index (info >> 1) and whether it is a leaf (info & 1; its "left child" is
   itself). `slot` is where the walk reads its value in the row's slots (below): 4 * feature + 1
   when a missing value goes left, 4 * feature when it goes right; a leaf reads slot 4 * NF. */
typedef struct {
    THR_T threshold;
    int32_t slot;
    uint32_t info;
} Node;
"""

_WALK = r"""
/* A row's slots, per feature: the value with a missing one as GO_RIGHT, the same with GO_LEFT (the
   infinities on the side the comparison sends them), then present ? GO_LEFT : GO_RIGHT and
   missing ? GO_LEFT : GO_RIGHT (for splits on infinite thresholds, compared with 0: _node); after
   the features, GO_LEFT (the leaves read it) and GO_RIGHT. A step is then one comparison: go left
   when it holds (a missing value: when the node's default is left; a leaf: always, staying where
   it is), the child being the left one plus 0 or 1, computed, not branched to. So every walk of a
   tree takes its depth in steps, and LANES independent walks run side by side. */
#define SLOTS (4 * NF + 2)
#define STEP(n, x)                                                  \
    do {                                                           \
        const Node *p = &NODES[n];                                 \
        uint32_t go = (uint32_t)(CMP((x)[p->slot], p->threshold)); \
        n = (int32_t)((p->info >> 1) + 1 - go);                    \
    } while (0)

static inline void slots(const double *x, THR_T *s) {
    for (int f = 0; f < NF; f++) {
        THR_T v = (THR_T)(INPUT_T)x[f];
        int missing = v != v;
        s[4 * f] = missing ? GO_RIGHT : v;
        s[4 * f + 1] = missing ? GO_LEFT : v;
        s[4 * f + 2] = missing ? GO_RIGHT : GO_LEFT;
        s[4 * f + 3] = missing ? GO_LEFT : GO_RIGHT;
    }
    s[4 * NF] = GO_LEFT;
    s[4 * NF + 1] = GO_RIGHT;
}

static inline void walk(int32_t *nd, const THR_T *const *xs, int shallow, int depth) {
    int d = 0;
    for (; d < shallow; d++) {
        for (int j = 0; j < LANES; j++) STEP(nd[j], xs[j]);
    }
    for (; d < depth; d++) {
        uint32_t leaves = 1;
        for (int j = 0; j < LANES; j++) leaves &= NODES[nd[j]].info;
        if (leaves) break;
        for (int j = 0; j < LANES; j++) STEP(nd[j], xs[j]);
    }
}

static inline int32_t walk_one(int32_t n, const THR_T *x, int depth) {
    for (int d = 0; d < depth; d++) STEP(n, x);
    return n;
}

static void postprocess(ACC_T *r) {
#if AVERAGE
    for (int k = 0; k < NC; k++) r[k] /= (ACC_T)PER_CLASS[k];
#endif
    for (int k = 0; k < NC; k++) r[k] += (ACC_T)BASE[k];
#if POST_SIGMOID
    for (int k = 0; k < NC; k++) r[k] = (ACC_T)1 / ((ACC_T)1 + EXP(-(ACC_T)ALPHA * r[k]));
#elif POST_SOFTMAX
    ACC_T top = r[0], norm = 0;
    for (int k = 1; k < NC; k++) if (r[k] > top) top = r[k];
    for (int k = 0; k < NC; k++) { r[k] = EXP(r[k] - top); norm += r[k]; }
    for (int k = 0; k < NC; k++) r[k] /= norm;
#endif
}

/* Few rows: each row walks LANES trees at a time. More: tree-major, LANES rows at a time, so a
   tree's nodes stay in cache while the rows go through it. Leaves are added in the trees' order. */
static int predict_block(const double *X, Py_ssize_t n, double *out) {
    ACC_T stack[STACK_DOUBLES];
    THR_T stack_slots[STACK_DOUBLES];
    ACC_T *acc = stack;
    THR_T *S = stack_slots;
    if ((size_t)n * NC > STACK_DOUBLES) acc = (ACC_T *)PyMem_Malloc(sizeof(ACC_T) * NC * (size_t)n);
    if ((size_t)n * SLOTS > STACK_DOUBLES) S = (THR_T *)PyMem_Malloc(sizeof(THR_T) * SLOTS * (size_t)n);
    if (acc == NULL || S == NULL) {
        if (acc != stack) PyMem_Free(acc);
        if (S != stack_slots) PyMem_Free(S);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < (size_t)n * NC; i++) acc[i] = 0;
    for (Py_ssize_t i = 0; i < n; i++) slots(X + i * NF, S + i * SLOTS);
    int32_t nd[LANES];
    const THR_T *xs[LANES];
    if (n < LANES) {
        for (Py_ssize_t i = 0; i < n; i++) {
            const THR_T *x = S + i * SLOTS;
            ACC_T *a = acc + i * NC;
            int t = 0;
            for (int g = 0; g < NT / LANES; g++, t += LANES) {
                for (int j = 0; j < LANES; j++) { nd[j] = ROOT[t + j]; xs[j] = x; }
                walk(nd, xs, GROUP_SHALLOW[g], GROUP_DEPTH[g]);
                for (int j = 0; j < LANES; j++) a[CLASS[t + j]] += LEAF[nd[j]];
            }
            for (; t < NT; t++) a[CLASS[t]] += LEAF[walk_one(ROOT[t], x, DEPTH[t])];
        }
    } else {
        for (int t = 0; t < NT; t++) {
            int depth = DEPTH[t], c = CLASS[t];
            Py_ssize_t i = 0;
            for (; i + LANES <= n; i += LANES) {
                for (int j = 0; j < LANES; j++) { nd[j] = ROOT[t]; xs[j] = S + (i + j) * SLOTS; }
                walk(nd, xs, SHALLOW[t], depth);
                for (int j = 0; j < LANES; j++) acc[(i + j) * NC + c] += LEAF[nd[j]];
            }
            for (; i < n; i++) acc[i * NC + c] += LEAF[walk_one(ROOT[t], S + i * SLOTS, depth)];
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        ACC_T *a = acc + i * NC;
        postprocess(a);
        for (int k = 0; k < WIDTH; k++) out[i * WIDTH + k] = (double)a[FIRST + k];
    }
    if (acc != stack) PyMem_Free(acc);
    if (S != stack_slots) PyMem_Free(S);
    return 0;
}
"""


def lightgbm_refusal(model_text: str) -> str | None:
    """Why the walker does not take a LightGBM model.txt (None: it does). Its decision_type bits
    (LightGBM's tree.h: 1 categorical, 2 default left, 4-8 the missing type) name splits whose
    rule treelite's nodes do not carry: categorical ones, and zero-as-missing (missing type Zero:
    |value| <= 1e-35 goes the default way), which tl2cgen serves, checked like everything else."""
    for line in model_text.splitlines():
        if not line.startswith("decision_type="):
            continue
        for word in line.split("=", 1)[1].split():
            kind = int(word)
            if kind & 1:
                return "LightGBM categorical splits"
            if (kind >> 2) & 3 == 1:
                return "LightGBM zero-as-missing splits (missing type Zero)"
    return None


# Where a node reads its value in a row's slots (the walker's C): per feature, the value with a
# missing one read as GO_RIGHT, the same with GO_LEFT, then present ? GO_LEFT : GO_RIGHT and
# missing ? GO_LEFT : GO_RIGHT; after all features, GO_LEFT and GO_RIGHT.
_AS_RIGHT, _AS_LEFT, _PRESENT, _MISSING = range(4)


def _node(split: tuple[float, int, bool] | None, n_features: int, op: str, word: int) -> str:
    """A Node's C initializer. A split whose threshold the sentinels cannot straddle (an infinite
    one: LightGBM's `inf` that sends every number left and only a missing value by the default,
    XGBoost's `-inf` trivial split that sends every number right) reads a flag slot instead,
    compared with 0."""
    always_left, always_right = 4 * n_features, 4 * n_features + 1
    if split is None:
        return f"{{0,{always_left},{word}}}"
    value, f, default_left = split
    if math.isnan(value):
        raise ArraysError(f"a split on feature {f} has a NaN threshold")
    left, right = (-math.inf, math.inf) if op in ("<", "<=") else (math.inf, -math.inf)
    if _compare(left, op, value) and not _compare(right, op, value):
        return f"{{{_c_double(value)},{4 * f + (_AS_LEFT if default_left else _AS_RIGHT)},{word}}}"
    if _compare(right, op, value):  # even the far right number goes left: every number does
        slot = always_left if default_left else 4 * f + _PRESENT
    else:  # even the far left number goes right: every number does
        slot = 4 * f + _MISSING if default_left else always_right
    return f"{{0,{slot},{word}}}"


def _compare(a: float, op: str, b: float) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _field(accessor: Any, name: str) -> Any:
    import numpy as np

    return np.asarray(accessor.get_field(name))


def walker_generate(
    model: Any, first: int, width: int, target: Path, *, float32_input: bool = False
) -> list[str]:
    """Write the walker's C for a treelite model into `target`; [its one source file]. ArraysError
    when the model has anything the walker does not evaluate exactly as tl2cgen does.
    `float32_input`: each value is cast to float32 before it is compared (scikit-learn's decision
    trees: the random forests), as tl2cgen's entry point does for them."""

    header = model.get_header_accessor()
    n_features = int(_field(header, "num_feature")[0])
    n_target = int(_field(header, "num_target")[0])
    n_class = int(_field(header, "num_class")[0])
    if n_target != 1:
        raise ArraysError(f"the trees have {n_target} targets; one is served")
    leaf_shape = [int(v) for v in _field(header, "leaf_vector_shape")]
    if leaf_shape != [1, 1]:
        raise ArraysError(f"leaves are vectors of shape {leaf_shape}, the walker adds single numbers")
    post = str(header.get_field("postprocessor"))
    if post not in _POSTPROCESSORS:
        raise ArraysError(f"postprocessor {post} is not one the walker applies")
    thr_type = int(_field(header, "threshold_type")[0])
    leaf_type = int(_field(header, "leaf_output_type")[0])
    if thr_type not in (2, 3) or leaf_type != thr_type:  # TypeInfo: 2 float32, 3 float64
        raise ArraysError(f"threshold type {thr_type} and leaf type {leaf_type} are not one float type")
    c_type = "float" if thr_type == 2 else "double"
    class_id = [int(v) for v in _field(header, "class_id")]
    base = [float(v) for v in _field(header, "base_scores")]
    average = bool(_field(header, "average_tree_output")[0])
    n_trees = int(model.num_tree)
    if len(class_id) != n_trees or len(base) != n_class or not all(0 <= c < n_class for c in class_id):
        raise ArraysError("the trees' classes or base scores do not match the number of classes")
    if first + width > n_class:
        raise ArraysError(f"outputs {first}..{first + width} of {n_class}")
    splits: list[tuple[float, int, bool] | None] = []  # (threshold, feature, default left); None: a leaf
    info: list[int] = []  # each node's Node.info
    leaves: list[str] = []
    roots: list[int] = []
    depths: list[int] = []
    shallow: list[int] = []  # each tree's shallowest leaf
    operators: set[int] = set()
    for t in range(n_trees):
        tree = model.get_tree_accessor(t)
        kinds = _field(tree, "node_type")
        left, right = _field(tree, "cleft"), _field(tree, "cright")
        feature, default = _field(tree, "split_index"), _field(tree, "default_left")
        threshold, cmp, leaf = _field(tree, "threshold"), _field(tree, "cmp"), _field(tree, "leaf_value")
        if any(int(k) not in (_LEAF, _NUMERICAL) for k in kinds):
            raise ArraysError(f"tree {t} has categorical splits")
        offset = len(leaves)
        roots.append(offset)
        # new numbering: the root first, then each split's two children side by side
        order, place, depth = [0], {0: 0}, {0: 0}
        for i in order:
            if kinds[i] == _NUMERICAL:
                for child in (int(left[i]), int(right[i])):
                    place[child] = len(order)
                    depth[child] = depth[i] + 1
                    order.append(child)
        depths.append(max(depth.values()))
        shallow.append(min(depth[i] for i in order if kinds[i] == _LEAF))
        for i in order:
            here = offset + place[i]
            if kinds[i] == _LEAF:
                splits.append(None)
                info.append((here << 1) | 1)
                leaves.append(_c_double(float(leaf[i])))
                continue
            f = int(feature[i])
            if not 0 <= f < n_features:
                raise ArraysError(f"tree {t} splits on feature {f} of {n_features}")
            operators.add(int(cmp[i]))
            splits.append((float(threshold[i]), f, bool(default[i])))
            info.append((offset + place[int(left[i])]) << 1)
            leaves.append("0")
    if len(splits) >= 1 << 30:
        raise ArraysError(f"{len(splits):,} nodes: more than the walker indexes")
    if len(operators) > 1 or not operators <= set(_OPERATORS):
        raise ArraysError(f"comparison operators {sorted(operators)}: the walker takes one of <, <=, >, >=")
    op = _OPERATORS[operators.pop()] if operators else "<="
    nodes = [_node(split, n_features, op, word) for split, word in zip(splits, info, strict=True)]
    starts = range(0, n_trees - n_trees % LANES, LANES)
    groups = [max(depths[g : g + LANES]) for g in starts]
    group_shallow = [min(shallow[g : g + LANES]) for g in starts]
    per_class = [class_id.count(k) or 1 for k in range(n_class)]
    alpha = float(_field(header, "sigmoid_alpha")[0])
    lines = [
        "/* generated by model_server.tree_arrays from treelite's model; do not edit */",
        "#define PY_SSIZE_T_CLEAN",
        "#include <Python.h>",
        "#include <stdint.h>",
        "#include <math.h>",
        f"#define NF {n_features}",
        f"#define NC {n_class}",
        f"#define FIRST {first}",
        f"#define WIDTH {width}",
        f"#define NT {n_trees}",
        f"#define LANES {LANES}",
        f"typedef {c_type} THR_T;",
        f"typedef {'float' if float32_input or c_type == 'float' else 'double'} INPUT_T;",
        f"typedef {c_type} ACC_T;",
        f"#define EXP {'expf' if c_type == 'float' else 'exp'}",
        f"#define CMP(v, t) ((v) {op} (t))",
        f"#define GO_LEFT {'-INFINITY' if op in ('<', '<=') else 'INFINITY'}",
        f"#define GO_RIGHT {'INFINITY' if op in ('<', '<=') else '-INFINITY'}",
        f"#define AVERAGE {int(average)}",
        f"#define POST_SIGMOID {int(post == 'sigmoid')}",
        f"#define POST_SOFTMAX {int(post == 'softmax')}",
        f"#define ALPHA {_c_double(alpha)}",
        _NODE,
        _array("int32_t", "ROOT", roots),
        _array("int32_t", "DEPTH", depths),
        _array("int32_t", "SHALLOW", shallow),
        _array("int32_t", "GROUP_DEPTH", groups or [0]),
        _array("int32_t", "GROUP_SHALLOW", group_shallow or [0]),
        _array("int32_t", "CLASS", class_id),
        _array("int32_t", "PER_CLASS", per_class),
        _array("double", "BASE", [_c_double(v) for v in base]),
        _array("THR_T", "LEAF", leaves),
        f"static const Node NODES[{len(nodes)}] = {{{','.join(nodes)}}};",
        C_READ_ROW,
        _STACK,
        _WALK,
        _ENTRY,
    ]
    text = "\n".join(lines) + "\n"
    (target / WALKER_SOURCE_FILE).write_text(text, encoding="utf-8")
    return [WALKER_SOURCE_FILE]
