"""An example pixmill plugin: one operator and one serving, registered through hooks."""

from __future__ import annotations

from pixmill import Failed, GeneratedImage, Operator, Option, Serving, hookimpl


class WordCount(Operator):
    """Count the words of a text field (a model-free operator)."""

    name = "word-count"
    description = "count the words of a text field"
    options = (
        Option("input_key", str, "prompt", "field to read"),
        Option("output_key", str, "words", "field to write"),
        Option("min_words", int, 0, "fail rows with fewer words"),
    )

    def process(self, rows, ctx):
        out = []
        for row in rows:
            text = row.get(self.config["input_key"])
            if not isinstance(text, str):
                out.append(Failed(f"no text in {self.config['input_key']!r}"))
                continue
            words = len(text.split())
            if words < self.config["min_words"]:
                out.append(Failed(f"only {words} words"))
            else:
                out.append({**row, self.config["output_key"]: words})
        return out


class SolidColour(Serving):
    """A text-to-image backend that paints one colour: a stand-in for a real model."""

    name = "solid"
    description = "one-colour images (an example serving)"
    capabilities = frozenset({"text-to-image"})
    options = (Option("model", str, "steelblue", "the colour (any PIL colour name)"),)

    def generate(self, requests):
        from PIL import Image  # heavy imports belong inside methods

        results = []
        for req in requests:
            size = (req.width or 64, req.height or 64)
            results.append([GeneratedImage(image=Image.new("RGB", size, self.config["model"]),
                                           params={"serving": self.name, "model": self.config["model"],
                                                   "seed": seed, "prompt": req.prompt})
                            for seed in req.seeds])
        return results


@hookimpl
def register_operators(register):
    register(WordCount)


@hookimpl
def register_servings(register):
    register(SolidColour)
