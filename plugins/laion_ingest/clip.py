"""Stage 6: the query encoders. Text and images become the vectors a dataset stores.

Each dataset's vectors were made by one of OpenAI's CLIP models (datasets.MODELS): ViT-B/32 for
LAION-400M (512-d), ViT-L/14 for LAION-5B (768-d); open_clip's LAION-trained weights give other
vectors. The model runs on ONNX Runtime (CPU), with Hugging Face `tokenizers` and Pillow:
onnxruntime installs in 76.5 MiB, torch's CPU build in 721.5 MiB, and PyPI's default Linux torch
pulls several GB of CUDA (bench/SEARCH.md). Both models share CLIP's tokenizer (77 tokens) and its
224-pixel preprocessing.

A model directory (LAION_CLIP_MODEL_DIR for ViT-B/32, LAION_CLIP_L14_MODEL_DIR for ViT-L/14) holds
the layout of the Hugging Face repositories `Qdrant/clip-ViT-B-32-text` and `-vision`, which are
ONNX exports of openai/clip-vit-base-patch32:

    text/model.onnx  text/tokenizer.json     input_ids, attention_mask -> text_embeds
    vision/model.onnx                        pixel_values (B, 3, 224, 224) -> image_embeds

Without it, `huggingface_hub` downloads ViT-B/32's two repositories on first use; no such export of
ViT-L/14 is published, and `python -m laion_ingest clip-export` makes one (clip_export.py). The
generated mirror comes with tiny models of these shapes (sample/clip_model.py).

Every input is hostile until measured, and costs bounded work whatever it is (the SQL functions and
the search page hand the encoders whatever a user sends): text is cut to MAX_TEXT_CHARS before it is
tokenized (77 tokens never need more); an image is at most MAX_IMAGE_BYTES, of a common raster format,
and at most MAX_IMAGE_PIXELS by its header, checked before a pixel is decoded; and it is resized
straight to the 224 x 224 centre crop, so that no intermediate image grows with its aspect ratio
(a 92-byte PNG of 12000 x 1 pixels became a 2.7-megapixel-wide resize, 2.5 GB, the other way).
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

from laion_ingest import settings
from laion_ingest.datasets import Model

MAX_TOKENS = 77  # CLIP's context length: longer text is cut, not refused
IMAGE_SIZE = 224
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)  # CLIP's preprocessing
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 50_000_000  # a 50-megapixel photo decodes to 150 MB of RGB
MAX_TEXT_CHARS = 16_384  # CLIP's 77 tokens are a few hundred characters of any real text
IMAGE_FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]  # no EPS (Pillow runs Ghostscript for it)


class ClipError(ValueError):
    """A query the encoders cannot take (an unreadable image, say). The message says which."""


def model_dir(model: Model, part: str) -> Path:
    """text/ or vision/ of the model's directory setting, or the hub download where one is published."""
    root = settings.clip_model_dir(model.setting)
    if root:
        path = Path(root) / part
        if not (path / "model.onnx").is_file():
            raise ClipError(f"{model.setting}: no {part}/model.onnx in {root}")
        return path
    if not model.hub:
        raise ClipError(f"{model.name} needs {model.setting}: no ONNX export of it is published; make one with"
                        f" `python -m laion_ingest clip-export --model {model.name} --out DIR` (docs/search.md)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model.hub[part], allow_patterns=["model.onnx", "*.json"]))


def _session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = settings.clip_threads()
    # Off: with it, each new batch shape kept another block (an L/14 image process grew 4.3 -> 6.4 GB)
    options.enable_mem_pattern = False
    return onnxruntime.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])


def _output(session, name: str) -> str:
    """The embedding output: by name, else the first 2-D output."""
    outputs = session.get_outputs()
    for o in outputs:
        if o.name == name:
            return name
    return next(o.name for o in outputs if len(o.shape) == 2)


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


class TextEncoder:
    """Captions and queries to unit vectors, in batches."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        pad = self.tokenizer.token_to_id("<|endoftext|>") or 0
        self.tokenizer.enable_padding(pad_id=pad, pad_token="<|endoftext|>")
        self.session = _session(path)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.output = _output(self.session, "text_embeds")

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([t[:MAX_TEXT_CHARS].removesuffix("\n") for t in texts])
        feed = {"input_ids": np.array([e.ids for e in encodings], np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], np.int64)}
        [vectors] = self.session.run([self.output], {k: v for k, v in feed.items() if k in self.inputs})
        return normalize(vectors)


class ImageEncoder:
    """Image files (bytes of any format Pillow reads) to unit vectors, in batches."""

    def __init__(self, path: Path):
        self.session = _session(path)
        self.output = _output(self.session, "image_embeds")

    def __call__(self, images: list[bytes]) -> np.ndarray:
        return self.embed(np.stack([pixel_values(data) for data in images]))

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed pixels (B, 3, 224, 224) to unit vectors."""
        [vectors] = self.session.run([self.output], {"pixel_values": pixels})
        return normalize(vectors)


def pixel_values(data: bytes) -> np.ndarray:
    """CLIP's preprocessing: RGB, shortest side to 224 (bicubic), centre crop, scaled, normalised.
    The resize reads only the crop's region of the source (Pillow's `box`): the same pixels as
    resizing the whole image and cropping it, without the whole resized image."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise ClipError(f"an image of {len(data):,} bytes is over the limit of {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit, and so over ours
        raise ClipError(f"the image is over the limit of {MAX_IMAGE_PIXELS:,} pixels ({exc})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ClipError(f"not an image Pillow can read ({len(data)} bytes;"
                        f" {', '.join(IMAGE_FORMATS)}): {exc}") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS or not width or not height:
        raise ClipError(f"the image is over the limit of {MAX_IMAGE_PIXELS:,} pixels ({width} x {height})")
    try:
        image = image.convert("RGB") if image.mode != "RGB" else image  # convert() copies even an RGB image
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ClipError(f"the image ({image.format}, {width} x {height}) cannot be decoded: {exc}") from None
    scale = IMAGE_SIZE / min(width, height)
    wide, high = max(IMAGE_SIZE, round(width * scale)), max(IMAGE_SIZE, round(height * scale))
    left, top = (wide - IMAGE_SIZE) // 2, (high - IMAGE_SIZE) // 2
    box = (left * width / wide, top * height / high,
           (left + IMAGE_SIZE) * width / wide, (top + IMAGE_SIZE) * height / high)
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC, box=box)
    array = (np.asarray(image, np.float32) / 255.0 - MEAN) / STD
    return array.transpose(2, 0, 1)


def read_image(source: str) -> bytes:
    """An image from a file path or an http(s) URL, at most 20 MiB: the command line's `--image` and
    `--image-url`, read with the rights of the user who runs it (the SQL functions read nothing)."""
    if source.startswith(("http://", "https://")):
        import requests

        try:
            with requests.get(source, timeout=30, stream=True) as r:
                r.raise_for_status()
                data = r.raw.read(MAX_IMAGE_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise ClipError(f"image {source}: {exc}") from None
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(MAX_IMAGE_BYTES + 1)
        except OSError as exc:
            raise ClipError(f"image {source}: {exc.strerror}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ClipError(f"image {source}: larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    return data


@lru_cache(maxsize=2)
def text_encoder(model: Model) -> TextEncoder:
    """One encoder per model and process (loading takes about a second for the real one); its output
    is checked against the model's dimension once, when it loads."""
    return _checked(TextEncoder(model_dir(model, "text")), model, lambda e: e(["a photo"]))


@lru_cache(maxsize=2)
def image_encoder(model: Model) -> ImageEncoder:
    return _checked(ImageEncoder(model_dir(model, "vision")), model, lambda e: e.embed(np.zeros(
        (1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)))


def _checked(encoder, model: Model, probe):
    """Refuse a model directory whose model answers another dimension than the model's (and so than
    its datasets' tables), naming both, before any query reaches SQL."""
    dim = probe(encoder).shape[1]
    if dim != model.dim:
        raise ClipError(f"{model.setting} holds a model of {dim}-d vectors, but {model.name}'s are {model.dim}-d,"
                        " as its datasets' tables")
    return encoder
