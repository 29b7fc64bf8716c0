"""pixmill.http.uploads: files sent as they are when the rule takes them, otherwise prepared (in
the process pool for large images) once per file, and a bad file fails with its name."""

from __future__ import annotations

import base64
import io
import os

import pytest
from PIL import Image
from pixmill.http.uploads import Uploader, UploadRule
from pixmill.image_files import probe_image


def _noise(path, size, mode="RGB"):
    Image.effect_noise(size, 60).convert(mode).save(path)
    return path


def test_a_file_the_rule_takes_is_sent_byte_for_byte(tmp_path):
    path = _noise(tmp_path / "a.png", (40, 30))
    upload = Uploader(UploadRule()).prepare(probe_image(path))
    assert upload.data == path.read_bytes() and upload.mime == "image/png"


def test_a_large_image_is_prepared_in_the_pool_losslessly_and_once(tmp_path):
    path = _noise(tmp_path / "big.bmp", (700, 500))  # BMP: not taken as it is; over the inline size
    uploader = Uploader(UploadRule(formats=frozenset({"PNG"})))
    first, again = uploader.prepare(probe_image(path)), uploader.prepare(probe_image(path))
    assert uploader.prepared == 1 and again is first
    decoded = Image.open(io.BytesIO(first.data))
    assert decoded.format == "PNG" and decoded.tobytes() == Image.open(path).convert("RGB").tobytes()


def test_a_changed_file_is_prepared_again(tmp_path):
    path = _noise(tmp_path / "img.bmp", (64, 64))
    uploader = Uploader(UploadRule(formats=frozenset({"PNG"})))
    before = uploader.prepare(probe_image(path))
    _noise(path, (32, 32))
    os.utime(path, ns=(1, 1))  # a different stamp even within the same clock tick
    after = uploader.prepare(probe_image(path))
    assert uploader.prepared == 2 and Image.open(io.BytesIO(after.data)).size == (32, 32) != before


def test_the_rule_resizes_and_encodes_jpeg_at_its_quality(tmp_path):
    path = _noise(tmp_path / "a.png", (200, 100))
    rule = UploadRule(size=lambda h, w: (h // 2, w // 2), encoding="jpeg", quality=40, data_url=True)
    upload = Uploader(rule).prepare(probe_image(path))
    url = upload.data_url()
    assert upload.mime == "image/jpeg" and url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (100, 50)
    assert b"".join(upload.data_url_parts()) == url.encode()


def test_a_truncated_file_fails_naming_it(tmp_path):
    path = _noise(tmp_path / "cut.png", (700, 500))
    probed = probe_image(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="cut.png"):
        Uploader(UploadRule(formats=frozenset({"JPEG"}))).prepare(probed)


def test_the_cache_keeps_to_its_budget_dropping_the_oldest(tmp_path):
    paths = [_noise(tmp_path / f"{i}.png", (64, 64)) for i in range(6)]
    size = len(paths[0].read_bytes())
    uploader = Uploader(UploadRule(), cache_bytes=int(size * 2.5))
    for path in paths:
        uploader.prepare(probe_image(path))
    uploader.prepare(probe_image(paths[-1]))  # still cached
    assert uploader.prepared == 6
    uploader.prepare(probe_image(paths[0]))  # dropped long ago: prepared again
    assert uploader.prepared == 7


def test_a_slow_file_holds_up_neither_other_files_nor_a_second_preparation(tmp_path):
    """A file still being read (here a pipe nobody has written yet, like a slow network disk) does
    not stop other rows' uploads, and a second row naming it waits for the same preparation."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    png = _noise(tmp_path / "real.png", (40, 30))
    fifo = tmp_path / "slow.png"
    os.mkfifo(fifo)
    slow = replace(probe_image(png), path=fifo)  # the header of a PNG, the bytes still to come
    uploader = Uploader(UploadRule())
    writer = threading.Thread(target=lambda: fifo.write_bytes(png.read_bytes()))
    with ThreadPoolExecutor(2) as threads:
        reading = threads.submit(uploader.prepare, slow)
        try:
            other = threads.submit(uploader.prepare, probe_image(_noise(tmp_path / "other.png", (20, 20))))
            assert other.result(timeout=10).data == (tmp_path / "other.png").read_bytes()
            assert not reading.done()
            same = uploader.submit(slow)  # the same file again: the preparation under way, not another
        finally:
            writer.start()  # the bytes arrive (also when an assert failed: nothing stays blocked)
        assert reading.result(timeout=10).data == png.read_bytes() == same.result(timeout=10).data
    writer.join()
    assert uploader.prepared == 2
