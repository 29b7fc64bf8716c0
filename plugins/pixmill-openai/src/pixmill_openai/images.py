"""``openai-images``: the OpenAI Images API (generations and edits) on any compatible endpoint."""

from __future__ import annotations

import logging
from typing import Any

from pixmill.http import RequestError, TransientError, http_options
from pixmill.http.media import decode_base64
from pixmill.http.uploads import UploadRule, encode
from pixmill.image_files import pixels
from pixmill.options import Option
from pixmill.serving import IMAGE_EDIT, TEXT_TO_IMAGE, EditRequest, GeneratedImage, ImageRequest, ImagesOrError

from .base import ImageHTTPServing

log = logging.getLogger("pixmill.openai")

# Per-request overrides an operator may put in ImageRequest.extra / EditRequest.extra.
_PARAMS = ("size", "quality", "background", "output_format", "output_compression", "style", "moderation",
           "input_fidelity", "response_format")


class OpenAIImagesServing(ImageHTTPServing):
    """Text-to-image and editing through ``/v1/images/generations`` and ``/v1/images/edits``.

    Works with gpt-image-1 (several reference images per edit, masks, transparent backgrounds,
    PNG/JPEG/WebP output), DALL-E 3 (one image per call: ``n`` is split into several calls),
    DALL-E 2 (one square PNG per edit) and compatible models behind proxies. ``n`` is the number of
    seeds in the request (``--images-per-prompt``). Images come back as ``b64_json`` and are saved as
    sent; ``url`` answers are downloaded (without the API key). Masks follow pixmill's convention
    (white = repaint) and are converted to the API's (transparent = repaint).
    """

    name = "openai-images"
    description = "OpenAI Images API (gpt-image-1, DALL-E 2/3, compatible endpoints): generate and edit"
    capabilities = frozenset({TEXT_TO_IMAGE, IMAGE_EDIT})
    options = (
        *http_options(model="gpt-image-1", timeout=300.0),
        Option("size", str, None, "WxH (e.g. 1024x1024, 1536x1024) or auto; default: the request's "
               "width x height when given, else the API's default"),
        Option("quality", str, None, "low, medium, high or auto (gpt-image-1); standard or hd (dall-e-3)"),
        Option("background", str, None, "transparent, opaque or auto (gpt-image-1)",
               choices=("transparent", "opaque", "auto")),
        Option("output_format", str, None, "png, jpeg or webp (gpt-image-1)", choices=("png", "jpeg", "webp")),
        Option("output_compression", int, None, "0-100 for jpeg/webp output (gpt-image-1)"),
        Option("style", str, None, "vivid or natural (dall-e-3)", choices=("vivid", "natural")),
        Option("moderation", str, None, "low or auto (gpt-image-1)", choices=("low", "auto")),
        Option("input_fidelity", str, None, "high or low: how closely edits keep the input (gpt-image-1)",
               choices=("high", "low")),
        Option("response_format", str, None, "b64_json or url (DALL-E only; default b64_json); "
               "gpt-image models always answer b64_json", choices=("b64_json", "url")),
        Option("extra_body", dict, None, "extra JSON fields sent as they are (a provider's own parameters)"),
    )

    # -- capability methods -------------------------------------------------------------------
    def generate(self, requests: list[ImageRequest]) -> list[ImagesOrError]:
        return self._run(self._generate, requests)

    def edit(self, requests: list[EditRequest]) -> list[ImagesOrError]:
        for request in requests:  # start every upload of the batch before waiting for the first
            for image in request.images:
                self.uploads.submit(image)
        return self._run(self._edit, requests)

    def _run(self, method: Any, requests: list[Any]) -> list[ImagesOrError]:
        # One engine request per API call: dall-e-3 makes one image per call, so N images are N
        # calls, each with its own slot, timeout and retries, run concurrently.
        groups = [[self._factory(method, r, n) for n in self._calls(max(1, len(r.seeds)))] for r in requests]
        return [r if isinstance(r, Exception) else [im for call in r for im in call]
                for r in self.run_request_groups(groups)]

    @staticmethod
    def _factory(method: Any, request: Any, n: int) -> Any:
        return lambda: method(request, n)

    def upload_rule(self) -> UploadRule:
        # gpt-image models take PNG, JPEG and WebP files; DALL-E 2 only PNG. Other files (and
        # palette or CMYK images) are re-encoded as PNG, which every model takes.
        dalle = str(self.config["model"]).startswith("dall-e")
        return UploadRule(formats=frozenset({"PNG"} if dalle else {"PNG", "JPEG", "WEBP"}),
                          modes=frozenset({"RGB", "RGBA", "L", "LA"}))

    def _check_edit(self, request: EditRequest) -> None:
        model = str(self.config["model"])
        if not request.images:
            raise RequestError("an edit needs at least one input image")
        if model.startswith("dall-e-2") and len(request.images) > 1:
            raise RequestError(f"dall-e-2 edits take one image, this row has {len(request.images)} "
                               "(use gpt-image-1 for several reference images)")
        if model.startswith("dall-e-3"):
            raise RequestError("dall-e-3 cannot edit images (use gpt-image-1 or dall-e-2)")

    async def _files(self, request: EditRequest) -> tuple[list[tuple[str, bytes, str]], Any]:
        """The multipart files of an edit: each image as uploaded (prepared once per file, see
        :meth:`upload_rule`), and the mask converted to the API's convention."""
        import asyncio  # in the engine's loop; not when the plugin registers (pixmill --help)

        files = []
        for i, image in enumerate(request.images):
            upload = await asyncio.wrap_future(self.uploads.submit(image))
            files.append((f"image_{i}{upload.suffix}", upload.data, upload.mime))
        mask = None
        if request.mask is not None:
            size = request.images[0].size
            data = await asyncio.to_thread(lambda: encode(to_api_mask(pixels(request.mask), size))[0])
            mask = ("mask.png", data, "image/png")
        return files, mask

    # -- one request --------------------------------------------------------------------------
    def _params(self, request: ImageRequest | EditRequest) -> dict[str, Any]:
        cfg, model = self.config, str(self.config["model"])
        params: dict[str, Any] = {k: cfg.get(k) for k in _PARAMS}
        params.update({k: v for k, v in request.extra.items() if k in _PARAMS})
        if params["size"] is None and request.width and request.height:
            params["size"] = f"{request.width}x{request.height}"
        if params["response_format"] is None and model.startswith("dall-e"):
            params["response_format"] = "b64_json"  # DALL-E defaults to short-lived URLs
        return {k: v for k, v in params.items() if v is not None}

    def _calls(self, n: int) -> list[int]:
        """``n`` images as API calls: dall-e-3 makes one image per call."""
        if str(self.config["model"]).startswith("dall-e-3"):
            return [1] * n
        return [n]

    async def _generate(self, request: ImageRequest, n: int) -> list[GeneratedImage]:
        params = self._params(request)
        response = await self.client.images.generate(model=self.config["model"], prompt=request.prompt, n=n,
                                                     extra_body=self.config.get("extra_body"), **params)
        return await self._collect(response, request.prompt, params, n)

    async def _edit(self, request: EditRequest, n: int) -> list[GeneratedImage]:
        # A row with an input the model cannot take fails here, before any request. The uploads
        # were started when the batch was built (edit()), off the event loop.
        self._check_edit(request)
        files, mask = await self._files(request)
        model = str(self.config["model"])
        params = self._params(request)
        # Several images go as repeated image[] parts, one file each (never a collage).
        image_arg: Any = files if len(files) > 1 or not model.startswith("dall-e") else files[0]
        if mask is not None:
            params["mask"] = mask
        response = await self.client.images.edit(model=model, image=image_arg, prompt=request.prompt, n=n,
                                                 extra_body=self.config.get("extra_body"), **params)
        return await self._collect(response, request.prompt, params, n, reference_images=len(files),
                                   mask=request.mask is not None)

    async def _collect(self, response: Any, prompt: str, params: dict[str, Any], n: int,
                       **extra: Any) -> list[GeneratedImage]:
        items = list(getattr(response, "data", None) or [])
        if not items:
            raise RequestError(f"the API answered with no image (model {self.config['model']})")
        if len(items) < n:
            log.warning("%s: asked for %d images, got %d", self.name, n, len(items))
        # The provider's request id is logged, not recorded: rows stay the same from run to run.
        log.debug("%s: request %s answered", self.name, getattr(response, "_request_id", None))
        shown = {k: v for k, v in params.items() if k != "mask"}
        out = []
        for item in items:
            if getattr(item, "b64_json", None):
                data = decode_base64(item.b64_json)
                if data is None:
                    raise TransientError("the answer's b64_json is not valid base64")
            elif getattr(item, "url", None):
                data = await self.fetch(item.url)
            else:
                raise RequestError("an image in the answer has neither b64_json nor url")
            meta = self.provenance(prompt, **shown,
                                   revised_prompt=getattr(item, "revised_prompt", None), **extra)
            out.append(self.to_image(data, meta))
        return out


def to_api_mask(mask: Any, size: tuple[int, int]) -> Any:
    """pixmill masks are white where to repaint; the Images API wants transparency there.

    An RGBA mask is taken as already in the API's convention. Others become an RGBA image whose
    alpha is 0 where the mask is white, resized to the first input image.
    """
    from PIL import Image, ImageOps

    if mask.mode == "RGBA":
        out = mask
    else:
        gray = mask.convert("L")
        out = Image.new("RGBA", gray.size, (0, 0, 0, 255))
        out.putalpha(ImageOps.invert(gray))
    if out.size != tuple(size):
        out = out.resize(tuple(size), Image.NEAREST)
    return out
