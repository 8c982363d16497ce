"""Issue 11 items 13-15, 18: validate reads everything the run will read, refuses hostile YAML
in bounded time and memory, reports every problem at once, and owns the backend environment."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.scenario import ScenarioError, load_scenario
from harness.scenario.backend_env import split_inherited

REPO = Path(__file__).resolve().parents[2]
BASE = "name: demo\nworkload:\n  sessions: 2\n  duration_s: 10\n"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, overrides)
    return str(info.value)


def validate_capped(path: Path, mem_bytes: int = 400 << 20) -> subprocess.CompletedProcess[str]:
    """`harness validate` in a process whose address space is capped: an alias expansion that
    were not refused would die of MemoryError (exit 1 with a traceback), not exit 2."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    return subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, preexec_fn=cap, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- hostile YAML


def test_latin1_byte_is_exit_2_naming_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: demo\ndescription: caf\xe9\nworkload: {sessions: 1, duration_s: 1}\n")
    msg = error_of(path)
    assert "latin.yaml:2: not UTF-8 text (byte 0xe9 at column 17)" in msg


def test_billion_laughs_is_refused_under_a_memory_cap(tmp_path: Path) -> None:
    # 9 levels x 9 aliases: 9**9 = 387 million strings once expanded (it took 34 s and 2.9 GB
    # before MemoryError). Refused from the node graph, which is a few hundred nodes.
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write(tmp_path, "\n".join(lines) + "\n" + BASE)
    proc = validate_capped(path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "expands to more than 20000 nodes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_deep_nesting_and_recursive_alias_are_exit_2(tmp_path: Path) -> None:
    deep = write(tmp_path, "name: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    proc = validate_capped(deep)
    assert proc.returncode == 2 and "nested too deeply" in proc.stderr, proc.stderr[-2000:]
    assert "nested more than 50 levels" in error_of(
        write(tmp_path, "name: " + "[" * 60 + "]" * 60 + "\n" + BASE.split("\n", 1)[1], "d2.yaml")
    )
    assert "s.yaml:1: recursive YAML alias" in error_of(write(tmp_path, "a: &a [1, *a]\n" + BASE))


def test_hostile_set_value_is_refused_too(tmp_path: Path) -> None:
    bomb = "[" + ",".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 3000) + "]"
    msg = error_of(write(tmp_path, BASE), f"description={bomb}")
    assert "--set description" in msg and "expands to more than" in msg


# --------------------------------------------------------------------------- numbers, keys


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("duration_s", ".inf", "finite number"),
        ("duration_s", ".nan", "finite number"),
        ("duration_s", "100000", "less than or equal to 86400"),
        ("fps", ".inf", "finite number"),
        ("reply_timeout_s", "1e9", "less than or equal to 3600"),
        ("late_threshold_ms", "-.inf", "finite number"),
    ],
)
def test_numbers_are_finite_and_bounded(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    msg = error_of(write(tmp_path, BASE), f"workload.{key}={value}")
    assert f"workload.{key}" in msg and expected in msg


def test_duplicate_keys_are_errors_naming_both_lines(tmp_path: Path) -> None:
    text = BASE + "gates:\n  - errors.total == 0\ngates:\n  - accuracy >= 0.1\n"
    msg = error_of(write(tmp_path, text))
    assert "s.yaml:7: duplicate key 'gates' (first at line 5)" in msg
    nested = "name: demo\nworkload:\n  sessions: 2\n  sessions: 3\n  duration_s: 10\n"
    assert "s.yaml:4: duplicate key 'workload.sessions' (first at line 3)" in error_of(
        write(tmp_path, nested)
    )


def test_unquoted_version_says_to_quote_it_as_written(tmp_path: Path) -> None:
    text = BASE + "stack:\n  use_torchserve: true\n  torchserve:\n    model_version: 1.10\n"
    msg = error_of(write(tmp_path, text))
    assert "s.yaml:8: field 'stack.torchserve.model_version'" in msg
    assert 'quote it to keep it as text: "1.10"' in msg


# --------------------------------------------------------------------------- files the run reads


def test_trace_file_is_parsed_at_validate_time(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text('{"hands": {}}\n\n{"hands": \n')
    text = BASE + "  trace: {file: t.jsonl}\n"
    msg = error_of(write(tmp_path, text))
    assert f"field 'workload.trace.file': {tmp_path / 't.jsonl'}:3: invalid JSON" in msg
    (tmp_path / "t.jsonl").write_text('{"hands": {}, "x": NaN}\n')
    assert "t.jsonl:1: invalid frame: NaN is not a number JSON allows" in error_of(
        write(tmp_path, text)
    )


def test_run_with_a_bad_trace_exits_2_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("not json\n")
    path = write(tmp_path, BASE + "  trace: {file: t.jsonl}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "t.jsonl:1: invalid JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_reload_to_a_version_without_archive(tmp_path: Path) -> None:
    text = BASE + (
        "stack: {use_torchserve: true}\n"
        "timeline:\n  - {at_s: 2, action: reload_model, version: '9.9'}\n"
    )
    msg = error_of(write(tmp_path, text))
    assert "field 'timeline[0].version': no model archive for version 9.9" in msg
    assert "archives built: 1.0, 2.0" in msg


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("[]\n")
    text = BASE + (
        "  trace: {file: t.jsonl}\n"
        "stack:\n  use_torchserve: true\n  backend: {env: {USE_TORCHSERVE: 'false'}}\n"
        "timeline:\n  - {at_s: 50, action: reload_model, version: '7.0'}\n"
        "gates:\n  - 'accuracy >>= 1'\n"
        "gates:\n  - 'accuracy >= 0.5'\n"
    )
    msg = error_of(write(tmp_path, text))
    expected = [
        "t.jsonl:1: a frame must be a JSON object",  # trace file
        "USE_TORCHSERVE is set by stack.use_torchserve",  # backend env
        "beyond workload.duration_s",  # timeline
        "no model archive for version 7.0",  # archives
        "duplicate key 'gates'",  # the file itself
    ]
    for part in expected:
        assert part in msg, f"{part!r} missing from:\n{msg}"


# --------------------------------------------------------------------------- backend env


def test_backend_env_contradicting_a_scenario_key_is_an_error(tmp_path: Path) -> None:
    for name, key in [
        ("USE_TORCHSERVE", "stack.use_torchserve"),
        ("inference_workers", "stack.backend.inference_workers"),
        ("TORCHSERVE_ROLLOUT_PERCENT", "stack.rollout_percent"),
        # The stack sets these when it starts TorchServe; a user value silently replaced them.
        ("TORCHSERVE_MANAGEMENT_URL", "the stack"),
        ("TORCHSERVE_KEY_FILE", "the stack"),
    ]:
        msg = error_of(write(tmp_path, BASE), f"stack.backend.env.{name}=1")
        assert f"field 'stack.backend.env.{name}'" in msg and f"set by {key}" in msg


def test_backend_env_values_the_backend_refuses_are_errors_at_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Values the backend refused only at start (exit 3, no file:line): now exit 2 at validate.
    monkeypatch.setenv("MAX_SIGN_FRAMES", "1")  # the caller's shell is not what the stack gives
    path = write(tmp_path, BASE + "stack:\n  backend:\n    env:\n"
                 "      TORCHSERVE_BREAKER_WINDOW_MS: -1\n"
                 "      TORCHSERVE_HEDGE_BATCH_SERVICE_MS: abc\n")  # fmt: skip
    lines = error_of(path).splitlines()
    assert any(
        line.startswith(f"{path}:8: field 'stack.backend.env.TORCHSERVE_BREAKER_WINDOW_MS'")
        and "greater than or equal to 0" in line and "'-1'" in line for line in lines
    )  # fmt: skip
    assert any(
        line.startswith(f"{path}:9: field 'stack.backend.env.TORCHSERVE_HEDGE_BATCH_SERVICE_MS'")
        and "valid integer" in line for line in lines
    )  # fmt: skip
    # A rule over two settings (checked once each value is valid) names the first one set.
    msg = error_of(write(tmp_path, BASE), "stack.backend.env.MIN_SIGN_FRAMES=500",
                   "stack.backend.env.MAX_SIGN_FRAMES=400")  # fmt: skip
    assert "field 'stack.backend.env.MIN_SIGN_FRAMES'" in msg
    assert "MIN_SIGN_FRAMES must not exceed MAX_SIGN_FRAMES" in msg
    # Valid values, with a contradicting shell variable, pass.
    valid = ["stack.backend.env.MIN_SIGN_FRAMES=4", "stack.backend.env.TORCHSERVE_HEDGE_ENABLED=0"]
    load_scenario(write(tmp_path, BASE), valid)


def test_validate_cli_refuses_a_bad_backend_env_value_with_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "validate", "scenarios/torchserve.yaml",
         "--set", "stack.backend.env.TORCHSERVE_BREAKER_WINDOW_MS=-1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "field 'stack.backend.env.TORCHSERVE_BREAKER_WINDOW_MS'" in proc.stderr + proc.stdout


def test_backend_env_typos_get_a_warning_with_the_name(tmp_path: Path) -> None:
    warnings: list[str] = []
    load_scenario(
        write(tmp_path, BASE),
        ["stack.backend.env.USE_TORCHSEVRE=true", "stack.backend.env.REST_FRAMES_TO_END=12",
         "stack.backend.env.SIGNFLOW_WHATEVER=1", "stack.backend.env.HOME_DIR=/x"],
        warnings=warnings,
    )  # fmt: skip
    text = "\n".join(warnings)
    assert (
        "USE_TORCHSEVRE is not a backend setting" in text and "did you mean USE_TORCHSERVE" in text
    )
    assert "SIGNFLOW_WHATEVER is not a backend setting" in text
    assert "HOME_DIR" not in text and "REST_FRAMES_TO_END" not in text.split("rest gaps")[0]
    # REST_FRAMES_TO_END=12 makes the default rest gaps (from 15) still safe: no merge warning.
    assert "rest gaps" not in text


def test_rest_gaps_at_or_below_the_backend_limit_warn_an_accuracy_gate(tmp_path: Path) -> None:
    gated = write(tmp_path, BASE + "gates: ['accuracy >= 0.75']\n")
    warnings: list[str] = []
    load_scenario(gated, ["workload.trace.synthetic.rest_frames=[5, 15]"], warnings=warnings)
    assert any("ends a sign after 10 rest frames" in w for w in warnings), warnings
    warnings.clear()
    load_scenario(gated, ["stack.backend.env.REST_FRAMES_TO_END=40"], warnings=warnings)
    assert any("after 40 rest frames" in w for w in warnings), warnings
    # Without an accuracy gate, short rests are a choice (a higher inference rate): no warning.
    warnings.clear()
    load_scenario(write(tmp_path, BASE), ["workload.trace.synthetic.rest_frames=[5, 15]"],
                  warnings=warnings)  # fmt: skip
    assert warnings == []


def test_backend_env_on_compose_is_checked_and_on_external_warns(tmp_path: Path) -> None:
    # Compose passes stack.backend.env to the backend container: it is checked as on local.
    warnings: list[str] = []
    load_scenario(write(tmp_path, BASE),
                  ["stack.driver=compose", "stack.backend.env.USE_TORCHSEVRE=true"],
                  warnings=warnings)  # fmt: skip
    assert any("did you mean USE_TORCHSERVE" in w for w in warnings), warnings
    msg = error_of(
        write(tmp_path, BASE), "stack.driver=compose", "stack.backend.env.USE_TORCHSERVE=1"
    )
    assert "USE_TORCHSERVE" in msg
    # An external backend is not started by the harness: the env cannot reach it.
    warnings.clear()
    ext = [
        "stack.driver=external",
        "stack.external.ws_url=ws://127.0.0.1:9/api/v1/translate/stream",
        "stack.external.http_url=http://127.0.0.1:9",
        "stack.backend.env.MOTION_THRESHOLD=0.2",
    ]
    load_scenario(write(tmp_path, BASE), ext, warnings=warnings)
    assert any("external driver cannot pass stack.backend.env" in w for w in warnings), warnings


def test_unknown_sign_in_sign_mix_is_a_validation_error(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, BASE), "workload.trace.synthetic.sign_mix=[hello, helo]")
    assert "sign_mix[1]" in msg and "unknown sign 'helo'" in msg


def test_inherited_backend_settings_are_dropped_runtime_ones_kept() -> None:
    kept, dropped, runtime = split_inherited(
        {"REST_FRAMES_TO_END": "40", "use_torchserve": "1", "TORCHSERVE_TOKEN": "t",
         "PATH": "/bin", "OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "1"}
    )  # fmt: skip
    assert set(dropped) == {"REST_FRAMES_TO_END", "use_torchserve", "TORCHSERVE_TOKEN"}
    assert kept == {"PATH": "/bin", "OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "1"}
    assert runtime == {"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "1"}


def test_secret_value_never_echoed_in_a_validation_error(tmp_path: Path) -> None:
    # A token that YAML reads as a date fails "should be a valid string": never show it.
    msg = error_of(write(tmp_path, BASE), "stack.backend.env.TORCHSERVE_TOKEN=2031-05-17")
    assert "stack.backend.env.TORCHSERVE_TOKEN" in msg and "value hidden" in msg
    assert "2031" not in msg


def test_backend_env_numbers_and_booleans_become_text(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, BASE + "stack:\n  backend:\n    env: {MOTION_THRESHOLD: 0.2,"
                             " LOG_LEVEL: debug, TORCH_THREADS: 2}\n"))  # fmt: skip
    assert sc.stack.backend.env == {"MOTION_THRESHOLD": "0.2", "LOG_LEVEL": "debug",
                                    "TORCH_THREADS": "2"}  # fmt: skip


def test_baseline_scenario_is_validated_with_the_overrides_it_will_run_with(tmp_path: Path) -> None:
    write(tmp_path, "name: b\nworkload: {sessions: 1, duration_s: .inf}\n", "b.yaml")
    main = write(tmp_path, BASE + "baseline: {scenario: b.yaml}\n", "m.yaml")
    msg = error_of(main)
    assert "m.yaml:5: field 'baseline.scenario': the baseline scenario is invalid" in msg
    assert "b.yaml:2: field 'workload.duration_s'" in msg and "finite number" in msg
    # The run applies workload overrides to the baseline too, so the validator does as well.
    assert load_scenario(main, ["workload.duration_s=4"]).workload.duration_s == 4


def test_remote_workers_that_could_not_take_part_are_warned_about() -> None:
    """Remote Locust workers need a master and a system under test they can reach: the shipped
    distributed.yaml (loopback master, free port, local stack) warns on each, naming the line."""
    scenario = REPO / "scenarios" / "distributed.yaml"
    warnings: list[str] = []
    load_scenario(scenario, ["workload.locust.expect_remote_workers=2"], warnings=warnings)
    assert len(warnings) == 3, warnings
    host, port, driver = (
        next(w for w in warnings if f"field '{field}'" in w)
        for field in ("workload.locust.master_bind.host", "workload.locust.master_bind.port",
                      "stack.driver")
    )  # fmt: skip
    assert "127.0.0.1 is loopback: 2 remote worker(s)" in host and "distributed.yaml:" in host
    assert "cannot know: fix one" in port
    assert "local stack publishes its backend on loopback only" in driver
    # The README's set-up for containerised workers: reachable master and system under test.
    warnings.clear()
    load_scenario(
        scenario,
        ["stack.driver=external", "workload.locust.workers=0",
         "stack.external.ws_url=ws://172.17.0.1:8000/api/v1/translate/stream",
         "stack.external.http_url=http://172.17.0.1:8000",
         "workload.locust.expect_remote_workers=2", "workload.locust.master_bind.host=172.17.0.1",
         "workload.locust.master_bind.port=5557"],
        warnings=warnings,
    )  # fmt: skip
    assert warnings == []
    # Local workers only (the default): nothing to warn about.
    load_scenario(scenario, [], warnings=warnings)
    assert warnings == []
