"""The pieces every engine shares: image resolution bounds and message/prompt building."""

from __future__ import annotations

import pytest
from PIL import Image
from pixmill_qwenvl.images import fit_pixels, fit_size
from pixmill_qwenvl.messages import render_prompt, split_images


@pytest.mark.parametrize("height, width", [(1024, 1024), (768, 1360), (33, 2000), (10, 10), (4000, 3000)])
def test_fit_size_gives_multiples_of_28_within_bounds_keeping_aspect(height, width):
    lo, hi = 4 * 784, 1280 * 784
    h, w = fit_size(height, width, lo, hi)
    assert h % 28 == 0 and w % 28 == 0
    assert lo <= h * w <= hi
    assert abs(h / w - height / width) / (height / width) < 0.35  # rounding to 28 at small sizes costs a little


def test_fit_pixels_keeps_an_image_that_already_fits_and_converts_to_rgb():
    img = Image.new("RGB", (56, 84))
    assert fit_pixels(img, 784, 10_000) is img
    rgba = fit_pixels(Image.new("RGBA", (56, 56)), 784, 10_000)
    assert rgba.mode == "RGB" and rgba.size == (56, 56)


def test_fit_size_rejects_extreme_aspect_ratios():
    with pytest.raises(ValueError, match="aspect ratio"):
        fit_size(2, 600, 784, 10_000)


def test_split_images_keeps_every_image_in_order_and_marks_its_place():
    imgs = [Image.new("RGB", (28, 28), (c, 0, 0)) for c in (1, 2, 3)]
    messages = [{"role": "system", "content": "be strict"},
                {"role": "user", "content": [{"type": "text", "text": "A:"}, {"type": "image", "image": imgs[0]},
                                             {"type": "text", "text": "B:"}, {"type": "image", "image": imgs[1]},
                                             {"type": "image", "image": imgs[2]}, "score them"]}]
    template_messages, images = split_images(messages, 784, 10_000)
    assert [im.getpixel((0, 0))[0] for im in images] == [1, 2, 3]
    assert [p["type"] for p in template_messages[1]["content"]] == ["text", "image", "text", "image", "image", "text"]
    assert template_messages[0] == {"role": "system", "content": "be strict"}


def test_render_prompt_uses_the_models_template_else_qwens_format():
    from pixmill_qwenvl.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}]{% endfor %}"
    assert render_prompt(tokenizer, messages) == "[user]"  # the model's own template wins
    tokenizer.chat_template = None
    assert render_prompt(tokenizer, messages) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n")
