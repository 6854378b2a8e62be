"""The committed notebooks: without outputs (the executed copies live in the reports), each
with a papermill ``parameters`` cell that the pipeline reads; 01-04 form the pipeline."""

from __future__ import annotations

import nbformat
import pytest

from maxwhisper_lib.lab.pipeline import STAGES, declared_parameters, notebooks_dir

NOTEBOOKS = sorted(notebooks_dir().glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
        assert "execution" not in cell.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_first_among_code_cells(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0]
    assert "model" in declared_parameters(path)


def test_the_pipeline_runs_01_to_04():
    pipeline = [p.stem for p in NOTEBOOKS if p.stem[:2] in ("01", "02", "03", "04")]
    assert [name for _, name, _ in STAGES] == pipeline
