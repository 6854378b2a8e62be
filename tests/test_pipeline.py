"""The papermill pipeline's own parts (``maxwhisper_lib.lab.pipeline``, ``maxwhisper_lib.lab.notebook_report``):
parameters from the command line, run folders that are never reused, what notebooks hand
the report. (The notebooks themselves run under nbval: ``make notebooks``.)"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from maxwhisper_lib.lab import notebook_report as reports
from maxwhisper_lib.lab.pipeline import (
    STAGES,
    declared_parameters,
    new_run_dir,
    notebooks_dir,
    parse_parameter,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repeats=3", ("repeats", 3)),
        ('clips=["jfk"]', ("clips", ["jfk"])),
        ("int8_wer=false", ("int8_wer", False)),
        ("manifest=null", ("manifest", None)),
        ("model=tiny.en", ("model", "tiny.en")),
        ("note=a=b", ("note", "a=b")),
    ],
)
def test_parse_parameter_reads_json_values(text, expected):
    assert parse_parameter(text) == expected


@pytest.mark.parametrize("text", ["repeats", "=3", ""])
def test_parse_parameter_refuses_what_is_not_name_value(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected name=value"):
        parse_parameter(text)


def test_run_folders_are_new_and_never_reused(tmp_path):
    folder = new_run_dir(tmp_path, "weights/tiny.en", "cpu")
    assert (
        folder.is_dir() and folder.name.startswith("run-") and folder.name.endswith("-tiny.en-cpu")
    )
    named = new_run_dir(tmp_path, "tiny.en", "cpu", run_id="mine")
    assert named == tmp_path / "mine"
    with pytest.raises(FileExistsError, match="pick another --run-id"):
        new_run_dir(tmp_path, "tiny.en", "cpu", run_id="mine")


def test_every_stage_notebook_takes_the_shared_parameters():
    for _, name, _ in STAGES:
        declared = declared_parameters(notebooks_dir() / f"{name}.ipynb")
        assert {"model"} <= declared, name
    assert "device" in declared_parameters(notebooks_dir() / "03_transcription.ipynb")


def test_reports_write_only_inside_a_pipeline_run(tmp_path, monkeypatch):
    fig = plt.figure()
    monkeypatch.delenv(reports.RUN_DIR_VARIABLE, raising=False)
    assert reports.record_headline("03", {"x": 1}) is None
    assert reports.save_figure(fig, "plot") is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(reports.RUN_DIR_VARIABLE, str(tmp_path))
    headline = reports.record_headline("03", {"identical": "8/8", "wer": 0.05})
    assert json.loads(headline.read_text()) == {"identical": "8/8", "wer": 0.05}
    png = reports.save_figure(fig, "plot")
    assert png == tmp_path / "plot.png" and png.read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)
