"""`python -m laion_ingest clip-export`: a CLIP model's two towers as ONNX, in the directory layout
clip.py reads (text/model.onnx, text/tokenizer.json, vision/model.onnx).

ViT-B/32's export is published (Qdrant/clip-ViT-B-32-text and -vision, which clip.py downloads);
no export of OpenAI's ViT-L/14 in this layout is, so this makes one from the Hugging Face checkpoint
(openai/clip-vit-large-patch14 by default, or a local copy of it) with torch and transformers. The
package itself needs neither: install them in an environment of their own (docs/search.md).
The export is checked before it is written out for good: its output dimension must be the model's,
and ONNX Runtime must answer what torch answers, within 1e-4.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from laion_ingest.clip import ClipError
from laion_ingest.datasets import Model

CHECKPOINTS = {"ViT-B/32": "openai/clip-vit-base-patch32", "ViT-L/14": "openai/clip-vit-large-patch14"}
OPSET = 17


def export(model: Model, out: str | Path, source: str | None = None) -> Path:
    """Write model's text/ and vision/ ONNX exports into out, from source (a Hugging Face model id or
    directory; default OpenAI's checkpoint of the model); returns out."""
    import torch
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    source = source or CHECKPOINTS[model.name]
    text = CLIPTextModelWithProjection.from_pretrained(source).eval()
    vision = CLIPVisionModelWithProjection.from_pretrained(source).eval()
    for tower in (text, vision):
        if tower.config.projection_dim != model.dim:
            raise ClipError(f"{source} makes {tower.config.projection_dim}-d vectors, but {model.name}'s are"
                            f" {model.dim}-d")
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as scratch:
        work = Path(scratch)
        (work / "text").mkdir()
        (work / "vision").mkdir()
        _tokenizer(source, work / "text" / "tokenizer.json")
        ids = torch.tensor([[49406, 320, 1125, 539, 320, 1929, 49407]])  # "a photo of a dog", CLIP's BPE
        ids = ids.clamp(max=text.config.vocab_size - 1)
        mask = torch.ones_like(ids)
        pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        text, vision = _tower(text, "text_embeds"), _tower(vision, "image_embeds")
        with torch.no_grad():
            _export(text, (ids, mask), work / "text" / "model.onnx", ["input_ids", "attention_mask"], "text_embeds",
                    {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})
            _export(vision, (pixels,), work / "vision" / "model.onnx", ["pixel_values"], "image_embeds",
                    {"pixel_values": {0: "batch"}})
            _same(work / "text" / "model.onnx", {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
                  text(ids, mask).numpy())
            _same(work / "vision" / "model.onnx", {"pixel_values": pixels.numpy()}, vision(pixels).numpy())
        out.mkdir(parents=True, exist_ok=True)
        for part in ("text", "vision"):
            shutil.rmtree(out / part, ignore_errors=True)
            shutil.move(str(work / part), out / part)
    return out


def _tokenizer(source: str, path: Path) -> None:
    """The checkpoint's fast tokenizer as one tokenizer.json (CLIP's BPE, the same for every model)."""
    local = Path(source) / "tokenizer.json"
    if local.is_file():
        shutil.copy(local, path)
        return
    from transformers import CLIPTokenizerFast

    CLIPTokenizerFast.from_pretrained(source).backend_tokenizer.save(str(path))


def _export(module, args: tuple, path: Path, inputs: list[str], output: str, dynamic: dict) -> None:
    import torch

    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=[output],
                      dynamic_axes={**dynamic, output: {0: "batch"}}, opset_version=OPSET, dynamo=False,
                      do_constant_folding=True)


def _same(path: Path, feeds: dict, expected: np.ndarray) -> None:
    import onnxruntime

    got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    diff = float(np.max(np.abs(got - expected)))
    if diff > 1e-4:
        raise ClipError(f"{path.parent.name}: ONNX Runtime and torch differ by {diff:.2e}: the export is wrong")


def _tower(model, output: str):
    """The model as a module whose one output is the embedding (no hidden states to export)."""
    import torch

    inputs = ["input_ids", "attention_mask"] if output == "text_embeds" else ["pixel_values"]

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return getattr(self.model(**dict(zip(inputs, tensors, strict=True))), output)

    return Tower().eval()
