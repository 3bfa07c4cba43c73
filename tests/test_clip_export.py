"""`python -m laion_ingest clip-export`: OpenAI's ViT-L/14 to ONNX in the layout clip.py reads, since
no such export is published. It runs in the environment with torch that `make clip-export` makes
(.venv-clip-export; make test passes its python as LAION_TEST_EXPORT_PYTHON). No hub here: the
checkpoint is a tiny random-weight CLIP with ViT-L/14's shapes where they matter (768-d output,
14-pixel patches, 224-pixel images), built in the test by transformers.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_security_sql import photo, png

from laion_ingest import datasets
from laion_ingest.clip import image_encoder, pixel_values, text_encoder

EXPORT_PYTHON = os.environ.get("LAION_TEST_EXPORT_PYTHON")
pytestmark = pytest.mark.skipif(not EXPORT_PYTHON, reason="needs torch: make test sets LAION_TEST_EXPORT_PYTHON")

CHECKPOINT = """
import sys
from transformers import CLIPConfig, CLIPModel
dim = int(sys.argv[2])  # each tower's config names it too, as openai/clip-vit-large-patch14's does
layers = dict(intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, hidden_size=32, projection_dim=dim)
config = CLIPConfig(text_config=dict(vocab_size=49408, max_position_embeddings=77, **layers),
                    vision_config=dict(image_size=224, patch_size=14, **layers), projection_dim=dim)
CLIPModel(config).eval().save_pretrained(sys.argv[1])
"""
# What transformers itself answers for the same tokens and pixels: the reference the export must match.
REFERENCE = """
import sys, numpy as np, torch
from transformers import CLIPModel
model, feeds = CLIPModel.from_pretrained(sys.argv[1]).eval(), np.load(sys.argv[2])
with torch.no_grad():
    text = model.get_text_features(input_ids=torch.tensor(feeds["ids"]), attention_mask=torch.tensor(feeds["mask"]))
    image = model.get_image_features(pixel_values=torch.tensor(feeds["pixels"]))
out = [getattr(v, "pooler_output", v).numpy() for v in (text, image)]
np.savez(sys.argv[3], text=out[0], image=out[1])
"""


def export_python(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([EXPORT_PYTHON, *args], capture_output=True, text=True, timeout=600, check=check)


def checkpoint(path: Path, dim: int, tiny_clip: Path) -> Path:
    export_python("-c", CHECKPOINT, str(path), str(dim))
    shutil.copy(tiny_clip / "text" / "tokenizer.json", path / "tokenizer.json")
    return path


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_the_export_is_a_model_the_package_runs_as_torch_does(tmp_path, tiny_clip, monkeypatch):
    source = checkpoint(tmp_path / "checkpoint", 768, tiny_clip)
    out = tmp_path / "clip-vit-l-14"
    run = export_python("-m", "laion_ingest", "clip-export", "--model", "ViT-L/14", "--source", str(source),
                        "--out", str(out))
    assert f"set LAION_CLIP_L14_MODEL_DIR={out}" in run.stdout
    monkeypatch.setenv("LAION_CLIP_L14_MODEL_DIR", str(out))
    texts, images = ["a photo of a dog", "a red car"], [photo(), png(300, 200)]
    got_text = text_encoder(datasets.VIT_L_14)(texts)
    got_image = image_encoder(datasets.VIT_L_14)(images)
    assert got_text.shape == (2, 768) and got_image.shape == (2, 768)

    tokens = text_encoder(datasets.VIT_L_14).tokenizer.encode_batch(texts)
    np.savez(tmp_path / "feeds.npz", ids=np.array([t.ids for t in tokens], np.int64),
             mask=np.array([t.attention_mask for t in tokens], np.int64),
             pixels=np.stack([pixel_values(data) for data in images]))
    export_python("-c", REFERENCE, str(source), str(tmp_path / "feeds.npz"), str(tmp_path / "torch.npz"))
    torch_out = np.load(tmp_path / "torch.npz")
    assert np.allclose(got_text, unit(torch_out["text"]), atol=1e-4)
    assert np.allclose(got_image, unit(torch_out["image"]), atol=1e-4)


def test_a_checkpoint_of_another_dimension_is_refused_naming_both(tmp_path, tiny_clip):
    source = checkpoint(tmp_path / "b32-shaped", 512, tiny_clip)
    run = export_python("-m", "laion_ingest", "clip-export", "--model", "ViT-L/14", "--source", str(source),
                        "--out", str(tmp_path / "out"), check=False)
    assert run.returncode == 1
    assert "makes 512-d vectors, but ViT-L/14's are 768-d" in run.stderr
    assert not (tmp_path / "out").exists()
