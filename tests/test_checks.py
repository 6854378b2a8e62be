"""The MAX graphs against openai-whisper's PyTorch model, component by component (tiny.en, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.engine.model import MaxWhisper
from maxwhisper_lib.lab.checks import (
    KernelCheckError,
    KernelChecks,
    assert_all_passed,
    compare,
    real_inputs,
    tolerance_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jfk_inputs(tiny_weights):
    return real_inputs(tiny_weights, "jfk")


@pytest.fixture(scope="module")
def results(tiny_weights, max_tiny, jfk_inputs):
    mel, tokens = jfk_inputs
    return KernelChecks(tiny_weights, model=max_tiny, seed=0).run(mel, tokens)


def test_every_component_is_checked_on_random_and_real_inputs(results, tiny_weights):
    dims = tiny_weights.dims
    checked = {(r.component, r.inputs) for r in results}
    expected = ["encoder.conv_stem", "encoder", "decoder.logits (full sequence)"]
    expected += [f"encoder.blocks.{i}" for i in range(dims.n_audio_layer)]
    expected += [f"decoder.blocks.{i}" for i in range(dims.n_text_layer)]
    for component in expected:
        assert (component, "random") in checked
        assert (component, "real") in checked
    assert ("alignment.cross_attention_scores", "real") in checked


def test_all_components_agree_with_the_reference_in_float32(results):
    assert_all_passed(results)
    exact = [r for r in results if not r.component.endswith("vs float32")]  # int8's own error
    assert all(r.relative_error < 1e-4 for r in exact)


def test_only_float32_on_a_gpu_gets_the_tf32_tolerance(results):
    # the CPU's float32 checks keep their own bound; the GPU's TF32 bound stays below float16's
    assert {r.tolerance for r in results if r.component.startswith("encoder")} == {1e-4}
    assert tolerance_for("float32", "cpu") == 1e-4
    assert tolerance_for("float32", "gpu") == 1e-2 < tolerance_for("float16", "gpu")
    assert tolerance_for("bfloat16", "gpu") == 5e-2


def test_int8_checks_bound_the_kernel_exactly_and_show_its_error(results):
    from maxwhisper_lib.lab.checks import INT8_CHECK_LAYERS, INT8_TOLERANCE, ROW_KERNEL_TOLERANCE

    linear = [r for r in results if r.component.startswith("int8 kernel ")]
    model = [r for r in linear if r.component.endswith("vs NumPy int8 model")]
    versus = [r for r in linear if r.component.endswith("vs float32")]
    assert len(model) == len(versus) == len(INT8_CHECK_LAYERS)
    assert all(r.tolerance == ROW_KERNEL_TOLERANCE and r.passed for r in model)
    assert all(r.tolerance == INT8_TOLERANCE and 1e-3 < r.relative_error < 1e-1 for r in versus)


def test_int8_attention_checks_every_encoder_block_on_real_activations(results):
    from maxwhisper_lib.lab.checks import (
        INT8_ATTENTION_MODEL_TOLERANCE,
        INT8_ATTENTION_TOLERANCE,
    )

    rows = [r for r in results if r.component.startswith("int8 attention kernel")]
    model = [r for r in rows if r.component.endswith("vs NumPy int8 model")]
    versus = [r for r in rows if r.component.endswith("vs float32")]
    assert len(model) == len(versus) == 4  # tiny.en's encoder blocks
    assert all(r.inputs == "real" and r.graph == "self_attention_int8" for r in rows)
    assert all(r.tolerance == INT8_ATTENTION_MODEL_TOLERANCE and r.passed for r in model)
    assert all(r.tolerance == INT8_ATTENTION_TOLERANCE and r.relative_error > 1e-3 for r in versus)
    assert all(r.passed for r in versus)


def test_row_kernels_join_the_checks_with_their_tighter_bound(results):
    from maxwhisper_lib.lab.checks import ROW_KERNEL_LAYERS, ROW_KERNEL_TOLERANCE

    rows = [r for r in results if r.component.startswith("row kernel ")]
    assert len(rows) == 2 * (len(ROW_KERNEL_LAYERS) + 1)  # each layer + logits, 1 and 5 rows
    assert {r.inputs for r in rows} == {"1 row", "5 rows"}
    assert all(r.tolerance == ROW_KERNEL_TOLERANCE and r.passed for r in rows)
    assert any("float16 51864x384" in r.component for r in rows)  # the tied logits weight


def test_attention_kernels_join_the_checks_at_the_models_shapes(results):
    from maxwhisper_lib.lab.checks import ROW_KERNEL_TOLERANCE

    rows = [r for r in results if r.component.startswith("attention kernel")]
    assert (
        sorted(r.graph for r in rows)
        == ["cross_attention_rows"] * 2
        + ["cross_attention_rows_f16"] * 2
        + ["self_attention_cached"] * 2
    )
    assert {r.inputs for r in rows if r.graph == "self_attention_cached"} == {
        "1 seq, 3 cached + 1",
        "5 seq, 3 cached + 1",
    }
    assert all(r.tolerance == ROW_KERNEL_TOLERANCE and r.passed for r in rows)
    assert all(r.shape[-1] == 384 for r in rows)


def test_cached_decoding_runs_at_least_twenty_steps(results, jfk_inputs):
    _, tokens = jfk_inputs
    cached = [r for r in results if r.component.startswith("decoder.logits (prompt +")]
    assert len(cached) == 2
    steps = int(cached[0].component.split("+ ")[1].split(" ")[0])
    assert steps >= 20
    assert cached[0].shape[1] == len(tokens)


def test_real_prompt_is_the_reference_text(jfk_inputs, tiny_weights):
    from maxwhisper_lib.decoding.tokenizer import get_tokenizer

    _, tokens = jfk_inputs
    tokenizer = get_tokenizer(tiny_weights.dims)
    text = tokenizer.decode([t for t in tokens.tolist() if t < tokenizer.eot])
    assert text.strip().startswith("And so my fellow Americans")
    assert tokens[0] == tokenizer.sot


def test_a_corrupted_weight_fails_its_block_and_nothing_before_it(tiny_weights):
    broken = MaxWhisper(tiny_weights, device="cpu")
    broken.registry["encoder.blocks.2.mlp.fc1.bias"] = (
        broken.registry["encoder.blocks.2.mlp.fc1.bias"] + 0.05
    )
    checks = KernelChecks(tiny_weights, model=broken, seed=1)
    mel = checks._random(1, tiny_weights.dims.n_mels, 3000)
    checks.check_encoder(mel, "random")
    status = {r.component: r.passed for r in checks.results}
    assert status["encoder.conv_stem"] and status["encoder.blocks.0"] and status["encoder.blocks.1"]
    assert not status["encoder.blocks.2"]
    assert not status["encoder"]
    with pytest.raises(KernelCheckError, match=r"encoder\.blocks\.2 \[random\]"):
        assert_all_passed(checks.results)


def test_nan_never_passes():
    out = np.array([1.0, np.nan])
    max_abs, rel = compare(out, np.array([1.0, 2.0]))
    assert np.isnan(max_abs) and np.isnan(rel)


def test_shape_mismatch_is_an_error():
    with pytest.raises(KernelCheckError, match="shape"):
        compare(np.zeros(3), np.zeros(4))
