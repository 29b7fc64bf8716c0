"""``openai-chat``: chat-completion models that answer with images (Gemini 2.5 Flash Image
"nano-banana" and similar), through OpenAI-compatible endpoints (OpenRouter, Gemini, LiteLLM...)."""

from __future__ import annotations

import logging
from typing import Any

from pixmill.http import RequestError, http_options
from pixmill.http.uploads import UploadRule, upload_options
from pixmill.options import Option
from pixmill.serving import IMAGE_EDIT, TEXT_TO_IMAGE, EditRequest, GeneratedImage, ImageRequest, ImagesOrError

from .base import ImageHTTPServing
from .parse import find_images, merge_stream

log = logging.getLogger("pixmill.openai")


class NoImageError(RequestError):
    """The model answered, but with no image: the row fails with the model's own words."""


class OpenAIChatImageServing(ImageHTTPServing):
    """Text-to-image and editing with chat models that return images.

    The prompt is a text part; every reference image is its own ``image_url`` part (a data URL), in
    order, never a collage, so multi-image edits ("put the dog from image 1 on the sofa of image
    2") see each subject whole. Images are read from every answer shape providers use (see
    :mod:`pixmill_openai.parse`); an answer without an image fails the row with the model's text
    as the reason and is never stored. One call per requested image (chat models make one).
    """

    name = "openai-chat"
    description = "chat models that return images (Gemini 2.5 Flash Image, OpenRouter...): generate and edit"
    capabilities = frozenset({TEXT_TO_IMAGE, IMAGE_EDIT})
    options = (
        *http_options(model="gemini-2.5-flash-image-preview", timeout=300.0),
        Option("modalities", list, ["image", "text"], "sent as `modalities` (OpenRouter and LiteLLM need "
               "image,text to return images); pass an empty value to leave it out"),
        Option("system_prompt", str, None, "a system message sent before the prompt"),
        Option("temperature", float, None, "sampling temperature"),
        Option("send_seed", bool, True, "send each image's seed as `seed` (turn off for providers that refuse it)"),
        *upload_options("png", what="reference images that are not PNG, JPEG or WebP files are re-encoded",
                        prefix="image"),
        Option("stream", bool, False, "stream answers as server-sent events (some providers only return "
               "images when streaming)", cache=False),
        Option("extra_body", dict, None, "extra JSON fields sent as they are (e.g. OpenRouter "
               '`{"image_config": {"aspect_ratio": "16:9"}}`)'),
    )

    def generate(self, requests: list[ImageRequest]) -> list[ImagesOrError]:
        return self.run_request_groups([self._calls(r, []) for r in requests])

    def edit(self, requests: list[EditRequest]) -> list[ImagesOrError]:
        return self.run_request_groups([self._calls(r, r.images) for r in requests])

    async def _refuse_mask(self) -> GeneratedImage:
        raise RequestError("openai-chat cannot take a mask (chat models edit from the instruction alone); "
                           "use --serving openai-images for inpainting, or drop --mask-key")

    def _calls(self, request: ImageRequest | EditRequest, images: list[Any]) -> list[Any]:
        """One API call per requested image (chat image models make one per answer), each its own
        engine request; the reference images are prepared once for all of them (and once per file
        for the whole step)."""
        if getattr(request, "mask", None) is not None:
            return [self._refuse_mask]
        uploads = [self.uploads.submit(image) for image in images]  # started now, off the event loop

        async def messages() -> list[dict[str, Any]]:
            import asyncio  # in the engine's loop; not when the plugin registers (pixmill --help)

            parts: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
            for upload in uploads:
                url = (await asyncio.wrap_future(upload)).data_url()
                parts.append({"type": "image_url", "image_url": {"url": url}})
            msgs: list[dict[str, Any]] = []
            if self.config.get("system_prompt"):
                msgs.append({"role": "system", "content": self.config["system_prompt"]})
            return [*msgs, {"role": "user", "content": parts}]

        def call(seed: int | None) -> Any:
            async def run() -> GeneratedImage:
                return await self._one(await messages(), request, seed, len(images))
            return run

        return [call(seed) for seed in (request.seeds or [None])]

    def upload_rule(self) -> UploadRule:
        # Chat image models take PNG, JPEG and WebP files as they are; others are re-encoded in
        # --image-format.
        return UploadRule(formats=frozenset({"PNG", "JPEG", "WEBP"}), encoding=self.config["image_format"],
                          quality=int(self.config["image_quality"]), data_url=True)

    async def _one(self, messages: list[dict[str, Any]], request: Any, seed: int | None,
                   n_refs: int) -> GeneratedImage:
        cfg = self.config
        kwargs: dict[str, Any] = {"model": cfg["model"], "messages": messages}
        if cfg.get("modalities"):
            kwargs["modalities"] = list(cfg["modalities"])
        if cfg.get("temperature") is not None:
            kwargs["temperature"] = cfg["temperature"]
        if cfg.get("send_seed") and seed is not None:
            kwargs["seed"] = seed
        body = {**(cfg.get("extra_body") or {}), **request.extra}
        if body:
            kwargs["extra_body"] = body
        if cfg.get("stream"):
            stream = await self.client.chat.completions.create(stream=True, **kwargs)
            chunks = [chunk.model_dump(warnings=False) async for chunk in stream]
            message, finish = merge_stream(chunks)
            request_id = chunks[0].get("id") if chunks else None
        else:
            completion = await self.client.chat.completions.create(**kwargs)
            data = completion.model_dump(warnings=False)
            choices = data.get("choices") or []
            if not choices:
                raise RequestError(f"the answer has no choices (model {cfg['model']})")
            message, finish = choices[0].get("message") or {}, choices[0].get("finish_reason")
            request_id = data.get("id")
        log.debug("%s: request %s answered", self.name, request_id)  # logged, not in rows: runs repeat exactly
        refs, text = find_images(message)
        if not refs:
            said = text[:300] or "(no text)"
            why = " (content filter)" if finish == "content_filter" else ""
            raise NoImageError(f"no image in the answer{why}; the model said: {said}")
        data_bytes = refs[0] if isinstance(refs[0], bytes) else await self.fetch(refs[0])
        meta = self.provenance(request.prompt, seed=kwargs.get("seed"), reference_images=n_refs or None,
                               text=text[:1000] or None,
                               images_returned=len(refs) if len(refs) > 1 else None)
        return self.to_image(data_bytes, meta)
