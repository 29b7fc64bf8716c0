"""What the image-making servings of this plugin share: URL downloads and result checks."""

from __future__ import annotations

from typing import Any

from pixmill.http import OpenAICompatibleServing, TransientError
from pixmill.http.media import sniff_image
from pixmill.http.urls import redact_url
from pixmill.serving import GeneratedImage

from .download import fetch_image, make_download_client


class ImageHTTPServing(OpenAICompatibleServing):
    """Base of ``openai-images`` and ``openai-chat``: keeps a key-less client for image URLs and
    turns returned bytes into :class:`GeneratedImage` (saved as the API sent them, never re-encoded)."""

    _downloads: Any = None

    def unload(self) -> None:
        downloads, self._downloads = self._downloads, None
        if downloads is not None:
            from pixmill.http.loop import close_quietly  # asyncio: not when the plugin registers

            close_quietly(downloads.aclose(), "the image download client")
        super().unload()

    async def fetch(self, url: str) -> bytes:
        if self._downloads is None and not url.startswith("data:"):
            # Made on first use: most answers carry the image inline, and a client costs ~0.1 s.
            self._downloads = make_download_client(self.config.get("timeout"))
        return await fetch_image(self._downloads, url, max_bytes=self.max_response_bytes())

    def provenance(self, prompt: str, **params: Any) -> dict[str, Any]:
        """The params recorded with every image: serving, model, endpoint host, the exact prompt."""
        base = {"serving": self.name, "model": self.config["model"], "endpoint": redact_url(self.config["base_url"]),
                "prompt": prompt}
        return {**base, **{k: v for k, v in params.items() if v is not None}}

    @staticmethod
    def to_image(data: bytes, params: dict[str, Any]) -> GeneratedImage:
        """Wrap returned bytes; bytes that are not an image are a malformed answer (retried)."""
        kind = sniff_image(data)
        if kind is None:
            raise TransientError("the answer's image data is not a PNG, JPEG, WebP or GIF image")
        return GeneratedImage(data=data, suffix=kind[0], params=params)
