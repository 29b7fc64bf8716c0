"""``pixmill qwenvl make-tiny DIR``: a random-weight Qwen2.5-VL folder that loads like a checkpoint."""

from __future__ import annotations

from click.testing import CliRunner
from pixmill.cli import build_cli


def test_make_tiny_writes_a_folder_that_from_pretrained_loads(tmp_path):
    target = tmp_path / "tiny-qwen"
    result = CliRunner().invoke(build_cli(), ["qwenvl", "make-tiny", str(target)])
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # Yes/No are single tokens, so vqascore reads them from the first answer position
    assert len(tokenizer.tokenize("Yes")) == 1 and len(tokenizer.tokenize("No")) == 1
    assert "<|vision_start|><|image_pad|><|vision_end|>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], tokenize=False)


def test_plugin_lists_its_serving_with_the_three_engines():
    result = CliRunner().invoke(build_cli(), ["servings"])
    assert result.exit_code == 0, result.output
    assert "qwen-vl" in result.output
