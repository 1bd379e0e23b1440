"""workbench doctor: real smoke runs of the fast-path options, and its verdict."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from engine import doctor
from workbench.cli import app

CPU = torch.device("cpu")


def test_a_smoke_run_passes_only_when_its_option_took_effect(monkeypatch):
    base = doctor.smoke(None, CPU, seconds=20)
    assert base["status"] == "PASS" and base["samples_per_s"] > 0
    bf16 = doctor.smoke("bf16", CPU, seconds=20)
    assert bf16["status"] == "PASS" and bf16["samples_per_s"] > 0
    assert doctor.smoke("cudnn benchmark", CPU)["status"] == "SKIP"  # CUDA only
    check_bf16 = doctor.OPTIONS["bf16"][1]
    monkeypatch.setitem(doctor.OPTIONS, "bf16", ("perf.amp=off", check_bf16))  # asks for nothing
    off = doctor.smoke("bf16", CPU, seconds=20)
    assert off["status"] == "FAIL" and "option in effect: False" in off["why"]


def test_the_presets_use_bf16_and_the_report_names_versions_and_devices():
    assert "bf16" in doctor.used_by_presets()  # amp = "auto" is every preset's default
    v = doctor.versions()
    assert v["torch"] == torch.__version__ and v["python"]
    cpu = doctor.devices()[0]
    assert cpu["device"] == "cpu" and cpu["memory_gib"] > 0


@pytest.mark.parametrize(("failing", "code"), [([], 0), (["bf16"], 1)])
def test_doctor_exits_1_when_an_option_the_presets_use_fails(monkeypatch, failing, code):
    report = {
        "versions": doctor.versions(),
        "devices": doctor.devices(),
        "device": "cpu",
        "smoke": [
            {"option": "bf16", "status": "FAIL" if failing else "PASS", "samples_per_s": 1.0}
        ],
        "used_by_presets": ["bf16"],
        "failed_used": failing,
    }
    monkeypatch.setattr(doctor, "check", lambda device: report)
    res = CliRunner().invoke(app, ["doctor", "--json"])
    assert res.exit_code == code
    assert json.loads(res.stdout)["failed_used"] == failing
