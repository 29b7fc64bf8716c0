"""Vision-language operators: ``judge`` (rubric scores or VQAScore) and ``caption``.

Model-agnostic: they build OpenAI-style chat messages with PIL image parts and call any serving
with the ``vision-chat`` capability (``qwen-vl`` with vLLM, transformers or a ``vllm serve`` server;
GPT-4o or Gemini through ``openai-llm``). Rubrics and answer parsing live in :mod:`pixmill.rubrics`.
"""

from __future__ import annotations

import math
from typing import Any

from ..context import StepContext
from ..errors import ConfigError, RowError, failure_reason
from ..fields import PROMPT_FIELDS, RESULT_IMAGE_FIELDS, first_present, result_image_field
from ..image_files import open_row_image
from ..operator import Failed, Operator, Outcome
from ..options import Option
from ..rows import ID_KEY, get_field, image_list, prompt_text, set_field
from ..rubrics import Rubric, load_rubric
from ..rubrics.parse import JudgmentError, parse_judgment
from ..serving import VISION_CHAT, ChatRequest, ChatResponse

PROMPT_KEYS = (*PROMPT_FIELDS, "instruction")  # what was asked for, for a judge: the prompt first
RAW_LIMIT = 600  # characters of an unparsable answer kept in the failure reason
VQA_QUESTION = 'Does this image show "{prompt}"? Please answer yes or no.'
_YES = {"yes", "y"}
_NO = {"no", "n"}


def load_images(row: dict, key: str | None, ctx: StepContext, option: str = "--image-key", as_files: bool = False
                ) -> list[Any]:
    """The images (RGB) named by ``row[key]`` (``key`` None: the row's result images, see
    :mod:`pixmill.fields`), in order: decoded PIL images, or with ``as_files``
    :class:`~pixmill.image_files.ImageFile` references (header checked, pixels left on disk for
    the serving's upload); a one-line RowError naming the fix (``option`` is the flag that names
    the field)."""
    rid = row.get(ID_KEY, "?")
    if key is None:
        key = result_image_field(row)
        if key is None:
            raise RowError(f"row {rid}: no image in {', '.join(RESULT_IMAGE_FIELDS)}; pass {option} FIELD")
    value = get_field(row, key)
    if value is None:
        fields = ", ".join(k for k in row if k != ID_KEY)
        raise RowError(f"row {rid}: no image field {key!r} (fields: {fields}); pass {option} FIELD")
    try:
        paths = [p for p in image_list(value) if p]
    except ValueError as exc:
        raise RowError(f"row {rid}: field {key!r}: {exc}") from None
    if not paths:
        raise RowError(f"row {rid}: field {key!r} holds no image path (did the step that makes it fail?)")
    return [open_row_image(ctx, path, key, row=row, as_file=as_files) for path in paths]


class _VisionChatOperator(Operator):
    """Shared plumbing: build one request per row (or per image), call the serving once per batch."""

    capability = VISION_CHAT
    default_batch_size = 16

    def fields_read(self) -> list[tuple[str, ...]]:
        key = self.config["image_key"]
        return [(key,) if key else RESULT_IMAGE_FIELDS]

    def judge_info(self) -> dict[str, Any]:
        serving = self.serving
        if serving is None:
            return {}
        return {"serving": serving.name, "model": serving.config.get("model")}

    def _chat(self, requests: list[ChatRequest]) -> list[ChatResponse | Exception]:
        if not requests:
            return []
        if self.serving is None:
            raise ConfigError(f"operator {self.name} needs a serving", "pass --serving NAME")
        answers = self.serving.chat(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"serving {self.serving.name} returned {len(answers)} answers for {len(requests)} requests")
        return answers


class Judge(_VisionChatOperator):
    """Score images with a vision-language model.

    ``--rubric t2i|edit|multi-image|FILE`` asks for sub-scores (0-10), an ``overall`` score and a
    ``rationale`` as JSON; ``--mode vqascore`` instead asks "Does this image show {prompt}?" and
    scores P(yes) from the first answer token's logprobs. Output under ``--output-key`` (default
    ``scores``): ``{"overall": 0-10, <sub-scores>, "rationale": str, "judge": {serving, model}}``,
    so ``filter --where "scores.overall >= 7"`` keeps the good rows. An answer without usable JSON
    fails its row, with the raw text (truncated) in the reason.
    """

    name = "judge"
    version = "1"
    description = "score images with a VLM: rubric (t2i, edit, multi-image, file) or VQAScore"
    options = (
        Option("rubric", str, "t2i", "t2i, edit, multi-image, or a YAML rubric file (see docs/judging.md)"),
        Option("mode", str, "rubric", "rubric: JSON scores and rationale; vqascore: P(yes) from logprobs",
               choices=("rubric", "vqascore")),
        Option("image_key", str, None, "field with the image(s) to judge, a path or a list: all are shown, in "
               "order (default: the row's newest images: edited_images, else images, else image)"),
        Option("prompt_key", str, None, "field with the prompt/instruction: a string or DataFlow-MM conversations "
               "(default: the first of prompt, conversations, instruction that the row has)"),
        Option("source_key", str, None, "field with the source/reference image(s), for the edit and multi-image rubrics"),
        Option("output_key", str, "scores", "field to write the scores object to"),
        Option("max_tokens", int, 512, "longest answer (rubric mode); too small cuts the JSON off"),
        Option("question", str, VQA_QUESTION, "vqascore question; {prompt} is the row's prompt"),
    )

    def __init__(self, serving: Any = None, **options: Any):
        super().__init__(serving, **options)
        self.rubric: Rubric | None = None
        if self.config["mode"] == "rubric":
            self.rubric = load_rubric(self.config["rubric"])
            if self.rubric.needs_source and not self.config["source_key"]:
                raise ConfigError(
                    f"judge: rubric {self.rubric.name} also shows the source/reference images",
                    "pass --source-key FIELD (e.g. images) and --image-key FIELD for the result (e.g. edited_image)",
                )

    def fields_read(self) -> list[tuple[str, ...]]:
        prompt = self.config["prompt_key"]
        needed = [*super().fields_read(), (prompt,) if prompt else PROMPT_KEYS]
        return needed + ([(self.config["source_key"],)] if self.config["source_key"] else [])

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        if self.rubric is not None:  # editing a rubric file recomputes the steps that used it
            ident["rubric_digest"] = self.rubric.digest
        return ident

    def _prompt(self, row: dict) -> str:
        key = self.config["prompt_key"]
        if key is None:
            key = first_present(row, PROMPT_KEYS)
            if key is None:
                raise RowError(f"row {row.get(ID_KEY, '?')}: no prompt field ({', '.join(PROMPT_KEYS)}); "
                               "pass --prompt-key FIELD")
        value = get_field(row, key)
        if value is None:
            raise RowError(f"row {row.get(ID_KEY, '?')}: no prompt field {key!r}; pass --prompt-key FIELD")
        try:
            return prompt_text(value)
        except ValueError as exc:
            raise RowError(f"row {row.get(ID_KEY, '?')}: field {key!r}: {exc}") from None

    def _request(self, row: dict, ctx: StepContext) -> ChatRequest:
        text = self._prompt(row)
        outputs = load_images(row, self.config["image_key"], ctx, as_files=self.image_files)
        if self.rubric is None:
            question = self.config["question"].replace("{prompt}", text)
            parts = [*({"type": "image", "image": im} for im in outputs), {"type": "text", "text": question}]
            return ChatRequest([{"role": "user", "content": parts}], max_tokens=1, temperature=0.0, logprobs=True)
        sources = load_images(row, self.config["source_key"], ctx, "--source-key", self.image_files) if self.rubric.needs_source else []
        parts: list[dict[str, Any]] = []
        for role, label in self.rubric.images.items():
            group = sources if role == "source" else outputs
            for i, im in enumerate(group, 1):
                numbered = f"{label} {i}" if len(group) > 1 else label
                parts += [{"type": "text", "text": f"{numbered}:"}, {"type": "image", "image": im}]
        parts.append({"type": "text", "text": self.rubric.render(text)})
        return ChatRequest([{"role": "user", "content": parts}], max_tokens=self.config["max_tokens"],
                           temperature=0.0, json=True)

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(rows)
        pending: list[tuple[int, ChatRequest]] = []
        for i, row in enumerate(rows):
            try:
                pending.append((i, self._request(row, ctx)))
            except RowError as exc:
                outcomes[i] = Failed(str(exc))
        answers = self._chat([req for _, req in pending])
        for (i, _), answer in zip(pending, answers, strict=True):
            outcomes[i] = self._outcome(rows[i], answer)
        return outcomes

    def _outcome(self, row: dict, answer: ChatResponse | Exception) -> Outcome:
        if isinstance(answer, Exception):
            return Failed(f"judge: {failure_reason(answer)}")
        try:
            if self.rubric is None:
                p_yes = yes_probability(answer.logprobs)
                scores: dict[str, Any] = {"overall": round(10.0 * p_yes, 4), "vqascore": p_yes}
            else:
                scores = parse_judgment(answer.text, self.rubric)
        except JudgmentError as exc:
            raw = answer.text if len(answer.text) <= RAW_LIMIT else answer.text[:RAW_LIMIT] + "..."
            what = "unparsable answer" if self.rubric is not None else "no vqascore"
            return Failed(f"judge: {what} ({exc}); raw: {raw!r}")
        scores["judge"] = self.judge_info()
        out = dict(row)
        set_field(out, self.config["output_key"], scores)
        return out


def yes_probability(logprobs: list[dict[str, float]] | None) -> float:
    """P(yes) / (P(yes) + P(no)) at the first answer position whose top tokens include yes or no.

    Token variants (``Yes``, `` yes``, ``YES``, ``Y``) are summed, so tokenizers that split
    differently agree. Raises :class:`JudgmentError` when there are no logprobs or no yes/no.
    """
    if not logprobs:
        raise JudgmentError("the serving returned no logprobs; vqascore needs a serving that gives token logprobs")
    for position in logprobs:
        p_yes = p_no = 0.0
        for token, logprob in position.items():
            word = token.strip().strip(".,!").lower()
            if word in _YES:
                p_yes += math.exp(logprob)
            elif word in _NO:
                p_no += math.exp(logprob)
        if p_yes + p_no > 0:
            return p_yes / (p_yes + p_no)
    first = ", ".join(list(logprobs[0])[:5])
    raise JudgmentError(f"no yes/no among the answer's top tokens (first position: {first})")


class Caption(_VisionChatOperator):
    """Describe each image with a vision-language model.

    Writes ``--output-key`` (default ``caption``): a string for a row with one image (a path, or a
    list of one, as in DataFlow-MM rows), a list of strings, one per image, for a row with several.
    """

    name = "caption"
    version = "1"
    description = "describe each image with a VLM"
    options = (
        Option("image_key", str, None, "field with the image(s) to describe (default: edited_images, else "
               "images, else image)"),
        Option("prompt", str, "Describe this image in detail.", "what to ask about each image"),
        Option("output_key", str, "caption", "field to write the caption(s) to"),
        Option("max_tokens", int, 512, "longest caption, in tokens"),
    )

    def process(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(rows)
        plan: list[tuple[int, int]] = []  # (row index, number of images)
        requests: list[ChatRequest] = []
        for i, row in enumerate(rows):
            try:
                images = load_images(row, self.config["image_key"], ctx, as_files=self.image_files)
            except RowError as exc:
                outcomes[i] = Failed(str(exc))
                continue
            plan.append((i, len(images)))
            for im in images:
                parts = [{"type": "image", "image": im}, {"type": "text", "text": self.config["prompt"]}]
                requests.append(ChatRequest([{"role": "user", "content": parts}], max_tokens=self.config["max_tokens"]))
        answers = iter(self._chat(requests))
        for i, count in plan:
            mine = [next(answers) for _ in range(count)]
            failed = next((a for a in mine if isinstance(a, Exception)), None)
            if failed is not None:
                outcomes[i] = Failed(f"caption: {failure_reason(failed)}")
                continue
            texts = [a.text.strip() for a in mine]  # type: ignore[union-attr]
            single = count == 1
            out = dict(rows[i])
            set_field(out, self.config["output_key"], texts[0] if single else texts)
            outcomes[i] = out
        return outcomes


JUDGE_OPERATORS: list[type[Operator]] = [Judge, Caption]

__all__ = ["Caption", "JUDGE_OPERATORS", "Judge", "load_images", "yes_probability"]
