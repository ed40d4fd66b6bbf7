"""The notebooks' first output names the model exactly."""

from anee_lite.notebook.setup import describe_model


def test_the_notebook_model_line_says_exactly_what_runs():
    assert describe_model("smollm2-135m", 30) == ("Model: smollm2-135m = SmolLM2-135M-Instruct, dequantized to float32 "
                                                  "from a Q4_1 GGUF, offline (30 layers)")
    assert describe_model("gpt2", 12) == "Model: gpt2 (12 layers)"
