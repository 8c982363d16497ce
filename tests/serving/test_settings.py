"""The one TorchServe settings type (issue 12 item 6): every entry point a person or a scenario
uses to configure TorchServe accepts and refuses exactly the same values, with the same limits,
and every rendering (config.properties, registration, container environment, model-config)
comes from the same object. No TorchServe is started here: each check stops before that."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.scenario import ScenarioError, as_stack_spec, load_scenario
from harness.scenario.models import TorchServeSpec
from harness.stack import make_stack
from harness.stack.base import torchserve_provenance
from serving.management import RunningConfig
from serving.settings import ENV_NAMES, TorchServeSettings, limits, range_text

REPO = Path(__file__).resolve().parents[2]
# The serving.local CLI option of each setting it exposes.
CLI = {
    "batch_size": "--batch-size",
    "max_batch_delay_ms": "--max-batch-delay",
    "workers": "--workers",
}
# The documented ranges: a change here is a change users see (README, docs/HARNESS.md).
RANGES = {
    "batch_size": (1, 1024),
    "max_batch_delay_ms": (0, 60_000),
    "workers": (1, 64),
    "response_timeout_s": (1, 86_400),
}


def test_the_ranges_are_the_documented_ones() -> None:
    for field, (lo, hi) in RANGES.items():
        assert limits(field) == (lo, hi), field
        assert range_text(field) == f"{lo}..{hi}"
    assert range_text("token_expiration_min") == ">0..1440"


def test_the_scenario_block_is_the_settings_type_not_a_copy() -> None:
    assert issubclass(TorchServeSpec, TorchServeSettings)
    assert TorchServeSpec.model_fields.keys() == TorchServeSettings.model_fields.keys()
    # No field redeclared (with a range of its own): the subclass adds none.
    assert inspect.get_annotations(TorchServeSpec) == {}
    for name, info in TorchServeSettings.model_fields.items():
        assert TorchServeSpec.model_fields[name].metadata == info.metadata, name
    assert TorchServeSpec().model_dump() == TorchServeSettings().model_dump()


def _scenario_error(tmp_path: Path, field: str, value: int) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: t
            stack:
              use_torchserve: true
              torchserve:
                {field}: {value}
            workload:
              sessions: 1
              duration_s: 5
            """
        )
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return str(info.value)


def _cli_error(field: str, value: int, capsys: pytest.CaptureFixture[str]) -> str:
    from serving.local import main

    with pytest.raises(SystemExit) as exit_:
        main([CLI[field], str(value)])
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("field", sorted(CLI))
def test_every_entry_point_refuses_the_same_values_with_the_same_limits(
    field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lo, hi = RANGES[field]
    span = f"{lo}..{hi}"
    for bad in (lo - 1, hi + 1):
        # A scenario file: file:line, the field's full name and its range.
        msg = _scenario_error(tmp_path, field, bad)
        assert f"s.yaml:5: field 'stack.torchserve.{field}'" in msg, msg
        assert f"(got {bad}); accepted: {span}" in msg, msg
        # python -m serving.local: a usage error (exit 2) before anything starts.
        err = _cli_error(field, bad, capsys)
        assert f"argument {CLI[field]}: {field} = {bad} is out of range ({span})" in err, err
        # A library user's mapping, validated at the stack's door: the scenario's message.
        with pytest.raises(ValueError) as info:
            make_stack({"torchserve": {field: bad}}, tmp_path)
        msg = str(info.value)
        assert f"make_stack: field 'stack.torchserve.{field}'" in msg, msg
        assert f"(got {bad}); accepted: {span}" in msg, msg
        # The compose container's registrar reads the environment the stack renders.
        with pytest.raises(ValueError) as info:
            TorchServeSettings.from_env({ENV_NAMES[field]: str(bad)})
        assert str(info.value) == f"{ENV_NAMES[field]} = {bad} is out of range ({span})"
    for good in (lo, hi):
        settings = TorchServeSettings(**{field: good})
        assert as_stack_spec({"torchserve": {field: good}}).torchserve.model_dump() == dict(
            settings
        )
        assert TorchServeSettings.from_env(settings.env()) == settings


def test_renderings_come_from_the_one_object() -> None:
    s = TorchServeSettings(
        batch_size=8,
        max_batch_delay_ms=5,
        workers=3,
        response_timeout_s=45,
        model_version="2.0",
        token_auth=False,
        token_expiration_min=0.75,
    )
    assert s.properties() == {
        "batch_size": "8",
        "max_batch_delay": "5",
        "default_workers_per_model": "3",
        "default_response_timeout": "45",
        "token_expiration_min": "0.75",
    }
    assert s.registration() == {
        "batch_size": 8,
        "max_batch_delay": 5,
        "initial_workers": 3,
        "response_timeout": 45,
    }
    assert s.per_model() == {
        "minWorkers": 3,
        "maxWorkers": 3,
        "batchSize": 8,
        "maxBatchDelay": 5,
        "responseTimeout": 45,
    }
    assert s.env() == {
        "MODEL_VERSION": "2.0",
        "TS_TOKEN_AUTH": "false",
        "SIGNFLOW_BATCH_SIZE": "8",
        "SIGNFLOW_MAX_BATCH_DELAY_MS": "5",
        "SIGNFLOW_WORKERS": "3",
        "SIGNFLOW_RESPONSE_TIMEOUT_S": "45",
        "SIGNFLOW_TOKEN_EXPIRATION_MIN": "0.75",
    }
    assert TorchServeSettings.from_env(s.env()) == s
    # No expiry set: TorchServe's own default, so no key and an empty variable.
    assert "token_expiration_min" not in TorchServeSettings().properties()
    assert TorchServeSettings().env()["SIGNFLOW_TOKEN_EXPIRATION_MIN"] == ""
    assert TorchServeSettings.from_env({}) == TorchServeSettings()
    # The provenance keys results.json has always had, asked values from the same object.
    assert torchserve_provenance(s, "3.0") == {
        "batch_size": 8,
        "max_batch_delay_ms": 5,
        "workers": 3,
        "model_version": "3.0",
        "initial_model_version": "2.0",
        "token_auth": False,
        "token_expiration_min": 0.75,
    }


def test_the_running_check_compares_against_the_settings() -> None:
    running = RunningConfig(
        version="2.0", batch_size=16, max_batch_delay_ms=50, workers=2, ready_workers=2
    )
    assert running.mismatches("2.0", TorchServeSettings()) == []
    asked = TorchServeSettings(batch_size=4, workers=1)
    assert running.mismatches("1.0", asked) == [
        "model_version: asked 1.0, running 2.0",
        "batch_size: asked 4, running 16",
        "workers: asked 1, running 2",
    ]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"workers": True}, "workers: must be a number, not a boolean (got True)"),
        ({"batch_size": 1.5}, "batch_size: Input should be a valid integer"),
        ({"token_expiration_min": float("inf")}, "token_expiration_min: Input should be a finite"),
        ({"token_expiration_min": 0}, "token_expiration_min = 0 is out of range (>0..1440)"),
        ({"model_version": "../1.0"}, "model_version: String should match pattern"),
        ({"batch": 8}, "batch: Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_named(values: dict, named: str) -> None:
    with pytest.raises(ValueError, match="^" + named.replace("(", r"\(").replace(")", r"\)")):
        TorchServeSettings.build(**values)


def test_settings_are_frozen_and_replace_validates() -> None:
    s = TorchServeSettings()
    with pytest.raises(ValueError, match="frozen"):
        s.workers = 3  # type: ignore[misc]
    assert s.replace(workers=3).workers == 3
    with pytest.raises(ValueError, match="workers = 0 is out of range"):
        s.replace(workers=0)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_module_imports_no_torch_and_no_torchserve() -> None:
    """The scenario layer and the TorchServe container import it as it is."""
    proc = _run(
        "import sys, serving.settings, serving.management\n"
        "bad = {'torch', 'ts', 'psutil', 'harness'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not bad, bad\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_the_container_registrar_refuses_a_bad_environment_before_any_call() -> None:
    """docker/torchserve/register.py exactly as the image runs it (its serving/ copy is the
    repository's here): a bad variable stops it at once, named with its range."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "docker" / "torchserve" / "register.py")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "SIGNFLOW_WORKERS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "signflow-register: SIGNFLOW_WORKERS = 0 is out of range (1..64)" in proc.stderr


def test_the_compose_file_passes_every_setting_with_its_default() -> None:
    """The compose stack renders ``settings.env()`` into docker compose's environment; only
    variables the compose file lists reach the container (a missing one was silently dropped)."""
    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = compose["services"]["torchserve"]["environment"]
    defaults = TorchServeSettings().env()
    for name in ENV_NAMES.values():
        assert env.get(name) == f"${{{name}:-{defaults[name]}}}", name


@pytest.mark.parametrize(
    "path", ["serving/config/config.properties", "docker/torchserve/config.properties"]
)
def test_config_templates_hold_the_default_settings(path: str) -> None:
    """TorchServe's server-wide defaults in both templates are the settings' defaults."""
    lines = (REPO / path).read_text().splitlines()
    keys = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    for key, value in TorchServeSettings().properties().items():
        assert keys.get(key) == value, (path, key)


def test_the_archive_carries_the_settings_batching() -> None:
    from serving.package_model import render_model_config

    text = render_model_config(TorchServeSettings(batch_size=8, max_batch_delay_ms=5), 2)
    assert "batchSize: 8\nmaxBatchDelay: 5\nresponseTimeout: 30\n" in text
    assert "torch_threads: 2" in text
    # Registration decides the worker count (the template says why): no key pins one.
    assert "\nminWorkers:" not in text and "\nmaxWorkers:" not in text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--batch-size", "0"], "argument --batch-size: batch_size = 0 is out of range (1..1024)"),
        (["--max-batch-delay", "60001"], "max_batch_delay_ms = 60001 is out of range (0..60000)"),
        (["--response-timeout", "0"], "response_timeout_s = 0 is out of range (1..86400)"),
    ],
)
def test_the_archive_builder_refuses_the_same_values(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from serving.package_model import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version", "1.0", *args])
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


# TS_TOKEN_AUTH values and what both the container's entrypoint and its registrar read.
BOOL_GOOD = {"true": True, "false": False, "False": False, "TRUE": True, " false ": False}
BOOL_BAD = ("0", "1", "no", "off", "yes", "on", "flase")


@pytest.mark.parametrize(("text", "want"), BOOL_GOOD.items())
def test_token_auth_env_reads_true_or_false_in_any_case(text: str, want: bool) -> None:
    # `False` once read as on by the entrypoint (a case-sensitive test) and off by the registrar.
    assert TorchServeSettings.from_env({"TS_TOKEN_AUTH": text}).token_auth is want
    assert _entrypoint_bool(text) == (0, "true" if want else "false", "")


@pytest.mark.parametrize("text", BOOL_BAD)
def test_token_auth_env_refuses_anything_else(text: str) -> None:
    # `off` or `0` silently meant "on" to both readers before.
    with pytest.raises(ValueError) as info:
        TorchServeSettings.from_env({"TS_TOKEN_AUTH": text})
    assert str(info.value) == f"TS_TOKEN_AUTH: must be true or false (got {text})"
    rc, out, err = _entrypoint_bool(text)
    assert (rc, out) == (2, "")
    assert f"TS_TOKEN_AUTH: must be true or false (got {text})" in err


def test_token_auth_env_unset_or_empty_keeps_auth_on() -> None:
    assert TorchServeSettings.from_env({"TS_TOKEN_AUTH": ""}).token_auth is True
    assert _entrypoint_bool("") == (0, "true", "")
    assert _entrypoint_bool(None) == (0, "true", "")


def test_container_refuses_a_bad_boolean_before_starting_anything() -> None:
    # The entrypoint itself exits 2 before its first side effect (cd into the image's keys/),
    # and the registrar exits 2 naming the variable: neither reaches TorchServe.
    env = {**os.environ, "TS_TOKEN_AUTH": "off", "PYTHONPATH": str(REPO)}
    entry = subprocess.run(
        ["sh", str(REPO / "docker/torchserve/entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert entry.returncode == 2
    assert entry.stderr == "signflow-torchserve: TS_TOKEN_AUTH: must be true or false (got off)\n"
    reg = subprocess.run(
        [sys.executable, str(REPO / "docker/torchserve/register.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert reg.returncode == 2
    assert reg.stderr == "signflow-register: TS_TOKEN_AUTH: must be true or false (got off)\n"


def _entrypoint_bool(text: str | None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the entrypoint's own parse (signflow-env.sh, sourced as
    the entrypoint sources it) of TS_TOKEN_AUTH=``text`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TS_TOKEN_AUTH"}
    if text is not None:
        env["TS_TOKEN_AUTH"] = text
    script = '. "$1"; value=$(signflow_bool TS_TOKEN_AUTH true) || exit 2; echo "$value"'
    run = subprocess.run(
        ["sh", "-c", script, "sh", str(REPO / "docker/torchserve/signflow-env.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return run.returncode, run.stdout.strip(), run.stderr
