"""The pure parts of the serving benchmark (bench/serving/run.py): wrk report parsing, the V2
request and response of MLServer, medians, ratios, goals and the table. Nothing is started or timed."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parents[3] / "bench" / "serving" / "run.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_serving_run", RUN_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


bench = _load()

WRK_STDOUT = """Running 10s test @ http://127.0.0.1:8080/invocations
  1 threads and 16 connections
  Latency Distribution
     50%    1.20ms
     99%    4.00ms
  90000 requests in 10.00s, 20.00MB read
WRK_JSON {"requests": 90000, "duration_us": 10000000, "bytes": 20000000, "errors_connect": 0, \
"errors_read": 0, "errors_write": 0, "errors_status": 0, "errors_timeout": 0, "latency_mean_us": 1500.0, \
"latency_max_us": 9000.0, "p50_us": 1200.0, "p90_us": 2500.0, "p99_us": 4000.0}
"""


def _wrk(**overrides: object) -> dict:
    doc = bench.parse_wrk_output(WRK_STDOUT)
    doc.update(overrides)
    return doc


def test_parses_the_report_line_of_wrk_report_lua():
    doc = bench.parse_wrk_output(WRK_STDOUT)
    assert doc["requests"] == 90000
    assert doc["p99_us"] == 4000.0
    assert bench.wrk_error_count(doc) == 0


def test_a_wrk_output_without_the_report_line_is_an_error():
    with pytest.raises(ValueError, match="no WRK_JSON line"):
        bench.parse_wrk_output("Running 10s test\n  0 requests in 10.00s\n")


def test_a_report_line_missing_fields_is_an_error():
    with pytest.raises(ValueError, match="lacks"):
        bench.parse_wrk_output('WRK_JSON {"requests": 1}')


def test_non_2xx_and_socket_errors_count_as_errors():
    doc = _wrk(errors_status=3, errors_timeout=1, errors_connect=2)
    assert bench.wrk_error_count(doc) == 6
    assert bench.summarize_load(doc, 1)["errors"] == 6


def test_summarize_load_gives_rates_and_milliseconds():
    single = bench.summarize_load(_wrk(), 1)
    assert single["req_s"] == pytest.approx(9000.0)
    assert single["rows_s"] == pytest.approx(9000.0)
    assert single["p50_ms"] == pytest.approx(1.2)
    assert single["p99_ms"] == pytest.approx(4.0)
    batch = bench.summarize_load(_wrk(requests=500, duration_us=2_000_000), 100)
    assert batch["req_s"] == pytest.approx(250.0)
    assert batch["rows_s"] == pytest.approx(25_000.0)


def test_a_zero_duration_is_rejected():
    with pytest.raises(ValueError, match="duration"):
        bench.summarize_load(_wrk(duration_us=0), 1)


def test_v2_request_is_one_row_major_fp64_tensor_asking_for_predict_proba():
    rows = [[float(i + 20 * r) for i in range(20)] for r in range(3)]
    doc = bench.v2_request(rows)
    (tensor,) = doc["inputs"]
    assert tensor["shape"] == [3, 20]
    assert tensor["datatype"] == "FP64"
    assert tensor["data"] == [float(v) for v in range(60)]
    assert doc["outputs"] == [{"name": "predict_proba"}]
    assert json.loads(json.dumps(doc)) == doc


def test_v2_request_for_one_row_and_several_outputs():
    doc = bench.v2_request([[0.5] * 20], ("predict", "predict_proba"))
    assert doc["inputs"][0]["shape"] == [1, 20]
    assert [o["name"] for o in doc["outputs"]] == ["predict", "predict_proba"]


def test_v2_request_rejects_ragged_rows():
    with pytest.raises(ValueError, match="same number"):
        bench.v2_request([[1.0, 2.0], [1.0]])


def test_v2_response_gives_the_class_probabilities_and_the_predict_output():
    doc = {
        "model_name": "bench",
        "outputs": [
            {"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]},
            {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.9, 0.1, 0.3, 0.7]},
        ],
    }
    proba, classes = bench.parse_v2_response(doc)
    assert proba == [[0.9, 0.1], [0.3, 0.7]]
    assert classes == [0, 1]
    nested = {"outputs": [{"name": "predict_proba", "shape": [1, 3], "data": [[0.2, 0.5, 0.3]]}]}
    assert bench.parse_v2_response(nested) == ([[0.2, 0.5, 0.3]], None)


def test_v2_predict_response_of_a_booster_binary_or_multiclass():
    binary = {"outputs": [{"name": "predict", "shape": [2], "data": [0.25, 0.9]}]}
    assert bench.parse_v2_predict_response(binary) == ([[0.75, 0.25], [pytest.approx(0.1), 0.9]], None)
    multi = {"outputs": [{"name": "predict", "shape": [1, 3], "data": [0.2, 0.5, 0.3]}]}
    assert bench.parse_v2_predict_response(multi) == ([[0.2, 0.5, 0.3]], None)


def test_missing_values_travel_as_null_in_every_body():
    nan = float("nan")
    assert bench.instances_request([[1, nan]]) == {"instances": [[1.0, None]]}
    assert bench.v2_request([[nan, 2.0]])["inputs"][0]["data"] == [None, 2.0]


def test_v2_response_without_predict_proba_or_of_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match="no predict_proba"):
        bench.parse_v2_response({"outputs": [{"name": "predict", "shape": [1], "data": [1]}]})
    with pytest.raises(ValueError, match="shape"):
        bench.parse_v2_response({"outputs": [{"name": "predict_proba", "shape": [2], "data": [0.1, 0.9]}]})


def test_instances_request_and_response():
    assert bench.instances_request([[1, 2.5]]) == {"instances": [[1.0, 2.5]]}
    naive = {"probabilities": [[0.75, 0.25]], "model_version": "v"}
    assert bench.parse_instances_response(naive) == ([[0.75, 0.25]], None)
    ours = {
        "predictions": ["no", "yes"],
        "classes": ["no", "yes"],
        "probabilities": [[0.75, 0.25], [0.1, 0.9]],
    }
    assert bench.parse_instances_response(ours) == ([[0.75, 0.25], [0.1, 0.9]], [0, 1])


def _p(*positives: float) -> list[list[float]]:
    return [[1.0 - p, p] for p in positives]


def test_compare_predictions_reports_the_largest_difference_and_class_mismatches():
    same = bench.compare_predictions(_p(0.2, 0.8), [0, 1], _p(0.2, 0.8 + 1e-9), None)
    assert same["ok"] and same["class_mismatches"] == 0
    assert same["max_abs_diff"] == pytest.approx(1e-9)
    off = bench.compare_predictions(_p(0.2, 0.8), [0, 1], _p(0.2, 0.8 + 1e-3), None)
    assert not off["ok"]
    # a float32 library's tolerance
    assert bench.compare_predictions(_p(0.8), [1], _p(0.8 + 5e-6), None, tolerance=1e-5)["ok"]
    # the class predict() picks: the most probable, the first of a tie (0.5 exactly is class 0)
    tie = bench.compare_predictions([[0.5, 0.5]], [0], [[0.5, 0.5]], None)
    assert tie["class_mismatches"] == 0
    three = bench.compare_predictions([[0.2, 0.5, 0.3]], [1], [[0.2, 0.3, 0.5]], None)
    assert three["class_mismatches"] == 1 and three["max_abs_diff"] == pytest.approx(0.2)
    wrong_class = bench.compare_predictions(_p(0.2), [0], _p(0.2), [1])
    assert wrong_class["class_mismatches"] == 1 and not wrong_class["ok"]
    with pytest.raises(ValueError, match="predictions for"):
        bench.compare_predictions(_p(0.2, 0.3), [0, 0], _p(0.2), None)
    with pytest.raises(ValueError, match="number of classes"):
        bench.compare_predictions([[0.2, 0.5, 0.3]], [1], _p(0.5), None)


def _round(stack: str, n: int, *, req_s: float, rows_s: float, p99: float, rss: float, ready: float) -> dict:
    return {
        "round": n,
        "stack": stack,
        "ready_s": ready,
        "peak_rss_mib": rss,
        "correctness": {"max_abs_diff": 1e-16 * n, "class_mismatches": 0},
        "single": {"req_s": req_s, "p50_ms": p99 / 4, "p99_ms": p99},
        "batch": {"rows_s": rows_s, "p50_ms": 10.0, "p99_ms": 20.0},
    }


def _rounds() -> list[dict]:
    rounds = []
    for n, factor in enumerate((1.0, 1.2, 0.9), start=1):
        rounds.append(
            _round("ours", n, req_s=9000 * factor, rows_s=60000 * factor, p99=4, rss=100, ready=0.3)
        )
        rounds.append(
            _round("mlserver", n, req_s=400 * factor, rows_s=20000 * factor, p99=90, rss=200, ready=4)
        )
        rounds.append(
            _round("fastapi-naive", n, req_s=1000 * factor, rows_s=25000 * factor, p99=60, rss=150, ready=3)
        )
    return rounds


def test_medians_per_stack_and_worst_correctness():
    medians = bench.median_results(_rounds(), bench.STACKS)
    assert medians["ours"]["single_req_s"] == pytest.approx(9000)
    assert medians["mlserver"]["batch_rows_s"] == pytest.approx(20000)
    assert medians["ours"]["max_abs_diff"] == pytest.approx(3e-16)
    assert medians["ours"]["rounds"] == 3


def test_a_stack_with_a_failed_round_is_not_reported():
    rounds = _rounds()
    error = "1-row: status 12 errors\nmlserver exited with code 1; stderr:\n    | Traceback"
    rounds[1] = {"round": 1, "stack": "mlserver", "error": error, "peak_rss_mib": 0}
    medians = bench.median_results(rounds, bench.STACKS)
    assert medians["mlserver"] == {"error": f"round 1: {error}"}
    ratios = bench.compute_ratios(medians)
    assert "mlserver" not in ratios
    goals = {g.goal: g for g in bench.evaluate_goals(medians, ratios, 16)}
    assert goals["1-row req/s vs mlserver"].passed is None
    assert goals["peak RSS vs mlserver"].passed is None
    table = bench.render_tables(medians, ratios, list(goals.values()), rounds=3, connections=16)
    assert "| mlserver | not reported: round 1: 1-row: status 12 errors |" in table


def test_ratios_are_ratios_of_medians():
    medians = bench.median_results(_rounds(), bench.STACKS)
    ratios = bench.compute_ratios(medians)
    assert ratios["fastapi-naive"]["single_req_s"] == pytest.approx(9.0)
    assert ratios["mlserver"]["single_req_s"] == pytest.approx(22.5)
    assert ratios["fastapi-naive"]["batch_rows_s"] == pytest.approx(2.4)
    assert ratios["mlserver"]["peak_rss_mib"] == pytest.approx(0.5)


def test_goals_pass_and_fail_against_the_issue():
    medians = bench.median_results(_rounds(), bench.STACKS)
    goals = {g.goal: g for g in bench.evaluate_goals(medians, bench.compute_ratios(medians), 16)}
    assert goals["1-row req/s vs fastapi-naive"].passed is True
    assert goals["1-row req/s vs mlserver"].passed is True
    assert goals["1-row p99 at 16 connections"].passed is True
    assert goals["100-row rows/s vs fastapi-naive"].passed is False  # 2.4x < 3x
    assert goals["predictions = original model (held-out set)"].passed is True
    assert goals["peak RSS vs mlserver"].passed is True
    assert goals["ready (first successful prediction)"].passed is True


def test_a_pipeline_or_onnx_model_has_the_other_formats_goals():
    # 9x one-row and 2.4x batches: a tree ensemble fails the 3x batch goal; a pipeline passes 5x and 2x
    medians = bench.median_results(_rounds(), bench.STACKS)
    ratios = bench.compute_ratios(medians)
    goals = {g.goal: g for g in bench.evaluate_goals(medians, ratios, 16, bench.FORMATS["pipeline"])}
    assert goals["1-row req/s vs fastapi-naive"].target == ">= 5x"
    assert goals["100-row rows/s vs fastapi-naive"].passed is True
    assert "1-row req/s vs mlserver" not in goals and "1-row p99 at 16 connections" not in goals
    assert goals["predictions = original model (held-out set)"].target == "<= 1e-06, 0 mismatches"
    onnx = {g.goal: g for g in bench.evaluate_goals(medians, ratios, 16, bench.FORMATS["onnx"])}
    assert onnx["predictions = original model (held-out set)"].target == "<= 1e-05, 0 mismatches"


def test_the_summary_has_a_row_per_format():
    medians = bench.median_results(_rounds(), bench.STACKS)
    ratios = bench.compute_ratios(medians)
    goals = bench.evaluate_goals(medians, ratios, 16)
    built = "native predictor: built native/trees.so from model.json (treelite 4.8.1, tl2cgen 1.0.0) in 3s"
    results = {
        "xgboost": {
            "model": {"build": built},
            "medians": medians,
            "ratios": ratios,
            "goals": [dataclasses.asdict(g) for g in goals],
        },
        "onnx": {"error": "skl2onnx conversion failed:\n    | Traceback"},
    }
    summary = bench.render_summary(results, rounds=3, connections=16)
    assert "| xgboost (tl2cgen) | 9,000 (4.0) | 1,000 | 400 | 9.0x / 22.5x | 60,000 | 2.4x |" in summary
    assert "fail: 100-row rows/s vs fastapi-naive" in summary
    assert "| onnx | not measured: skl2onnx conversion failed: |" in summary
    assert bench.served_by("native predictor: not compiled: tl2cgen wrote 22 MB") == (
        "library (over the compile budget)"
    )
    arrays = (
        "native predictor: built native/trees.so from model.joblib (modelops tree_arrays (...), as tl2cgen"
    )
    assert bench.served_by(arrays).startswith("tree_arrays.py")
    walked = (
        "native predictor: built native/trees.so from model.txt (modelops tree_arrays walker (treelite's nodes), "
        "treelite 4.8.1) in 3.1s ...; kept walker (CPU per row on 256 check rows, ...)"
    )
    assert bench.served_by(walked).startswith("tree_arrays.py walker")
    tl2cgen = "native predictor: built native/trees.so from model.txt (treelite 4.8.1, tl2cgen 1.0.0) ...; kept tl2cgen"
    assert bench.served_by(tl2cgen) == "tl2cgen"
    startup = "INFO linear pipeline compiled for batches under 64 rows (max |difference| 1e-16 ...)"
    assert bench.served_by("native predictor: not built: algorithm linear", startup).startswith("linear.py")


def test_the_table_has_a_row_per_stack_the_ratios_and_the_goals():
    medians = bench.median_results(_rounds(), bench.STACKS)
    ratios = bench.compute_ratios(medians)
    goals = bench.evaluate_goals(medians, ratios, 16)
    table = bench.render_tables(medians, ratios, goals, rounds=3, connections=16)
    lines = table.splitlines()
    assert any(line.startswith("| ours | 0.30 | 9,000 | 1.00 / 4.00 | 60,000 |") for line in lines)
    assert "| 1-row req/s | 22.50x | 9.00x |" in table
    assert "| 100-row rows/s vs fastapi-naive | 2.40x | >= 3x | FAIL |" in table
    # every table row has as many cells as its header
    for block in table.split("\n\n")[1:]:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) == 1, block


def test_round_order_rotates_so_no_stack_always_goes_first():
    stacks = list(bench.STACKS)
    firsts = {bench.round_order(stacks, i)[0] for i in range(3)}
    assert firsts == set(stacks)
    assert sorted(bench.round_order(stacks, 4)) == sorted(stacks)


def test_proc_parsing():
    stat = "4242 (python3 (serve) x) S 4200 4242 4242 0 -1 4194560 1 0 0 0"
    assert bench.parse_ppid(stat) == 4200
    status = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t  143360 kB\nVmRSS:\t  100000 kB\n"
    assert bench.parse_vm_hwm_kib(status) == 143360
    assert bench.parse_vm_hwm_kib("Name:\tzombie\n") == 0


def test_cli_defaults_follow_the_issue(tmp_path):
    args = bench.parse_args(["--workdir", str(tmp_path)])
    assert (args.rounds, args.connections, args.stack_list) == (3, 16, list(bench.STACKS))
    assert args.format_list == list(bench.FORMATS)  # every format of the issue in one run
    with pytest.raises(SystemExit):
        bench.parse_args(["--stacks", "ours,torchserve"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--formats", "hgb,catboost"])
    quick = bench.parse_args(["--quick", "--formats", "onnx", "--rounds=2"])
    assert (quick.rounds, quick.duration, quick.warmup, quick.format_list) == (2, 3.0, 1.0, ["onnx"])


def test_cpu_accounting_from_proc():
    proc_stat = (
        "cpu  300 0 60 1000 10 0 5 20 0 0\n"
        "cpu0 200 0 40 400 5 0 3 10 0 0\n"
        "cpu1 100 0 20 600 5 0 2 10 0 0\n"
        "intr 12345\n"
    )
    assert bench.parse_cpu_ticks(proc_stat, 0) == (253, 658)
    assert bench.parse_cpu_ticks(proc_stat, 1) == (132, 737)
    with pytest.raises(ValueError, match="cpu2"):
        bench.parse_cpu_ticks(proc_stat, 2)
    stat = "4242 (serve) R 1 4242 4242 0 -1 4194304 100 0 0 0 750 125 0 0 20 0 3 0 1000"
    assert bench.parse_process_ticks(stat) == 875


def test_interference_is_the_server_cores_time_not_spent_on_the_server():
    # 1000 ticks passed on the core: 900 busy, 850 of them the server's -> 5% others
    assert bench.interference((100, 1000), (1000, 2000), 850) == pytest.approx(0.05)
    assert bench.interference((0, 0), (500, 1000), 600) == 0.0  # rounding between the two counters
    assert bench.interference((0, 0), (0, 0), 0) == 0.0


def test_the_noisiest_measurement_is_reported_per_stack():
    rounds = _rounds()
    rounds[0]["batch"]["server_core_other_pct"] = 12.5
    rounds[1]["single"]["load_core_other_pct"] = 7.0  # mlserver's: the load generator's core
    medians = bench.median_results(rounds, bench.STACKS)
    assert medians["ours"]["noise_pct"] == 12.5
    assert medians["mlserver"]["noise_pct"] == 7.0
    assert medians["fastapi-naive"]["noise_pct"] == 0.0


def test_the_drift_statistics_cost_is_a_goal_when_ours_without_them_is_measured():
    # Given ours (median 9,000 one-row req/s) and ours without drift statistics 5% faster, then 30%
    rounds = [r for r in _rounds() if r["stack"] == "ours"]
    for factor in (1.05, 1.3):
        nostats = [
            {**r, "stack": bench.NOSTATS, "single": {**r["single"], "req_s": r["single"]["req_s"] * factor}}
            for r in rounds
        ]
        stacks = ["ours", bench.NOSTATS]
        medians = bench.median_results(rounds + nostats, stacks)
        goals = {g.goal: g for g in bench.evaluate_goals(medians, bench.compute_ratios(medians), 16)}
        goal = goals[f"drift statistics on: 1-row req/s vs {bench.NOSTATS}"]
        # Then 1/1.05 = 0.95x passes (>= 0.9x) and 1/1.3 = 0.77x fails
        assert goal.passed is (factor == 1.05), goal
    assert "drift statistics on: 1-row req/s vs ours-nostats" not in {
        g.goal for g in bench.evaluate_goals(bench.median_results(_rounds(), bench.STACKS), {}, 16)
    }


def test_throughput_per_server_cpu_second_compares_stacks_on_a_busy_machine():
    # Given two stacks measured while other processes took different shares of the server core
    rounds = []
    for n in (1, 2, 3):
        for stack, req_s, cpu_s in (("ours", 6000, 0.3), (bench.BEFORE, 4000, 0.4)):
            r = _round(stack, n, req_s=req_s, rows_s=req_s * 10, p99=4, rss=100, ready=0.3)
            r["single"].update(seconds=1.0, server_cpu_s=cpu_s)
            r["batch"].update(seconds=1.0, server_cpu_s=cpu_s * 2)
            rounds.append(r)

    # Then requests per second of the server's own CPU time are compared, not the raw rates only
    medians = bench.median_results(rounds, ["ours", bench.BEFORE])
    assert medians["ours"]["single_req_per_cpu_s"] == pytest.approx(20000)
    assert medians[bench.BEFORE]["batch_rows_per_cpu_s"] == pytest.approx(50000)
    ratios = bench.compute_ratios(medians)
    assert ratios[bench.BEFORE]["single_req_per_cpu_s"] == pytest.approx(2.0)
    assert ratios[bench.BEFORE]["single_req_s"] == pytest.approx(1.5)


def test_the_before_stack_needs_the_other_commits_serving_image(tmp_path):
    with pytest.raises(SystemExit):
        bench.parse_args(["--stacks", f"ours,{bench.BEFORE}"])
    args = bench.parse_args(["--stacks", f"ours,{bench.BEFORE}", "--before", str(tmp_path)])
    assert args.stack_list == ["ours", bench.BEFORE] and args.before == tmp_path
