"""Export a randomly initialised CLIP ViT-B/32 (text + vision towers) to ONNX.

No real weights are needed or fetched: the models are built from configs of
the exact openai/clip-vit-base-patch32 shape and initialised with
torch.manual_seed(0). Latency and memory depend only on the architecture, so
these files stand in for the real ones in benchmarks.

Writes:
    OUT/text/model.onnx      inputs  input_ids, attention_mask  int64 [batch, sequence]
                             output  text_embeds                float32 [batch, 512]
    OUT/text/tokenizer.json  word-level stand-in for CLIP's BPE tokenizer
                             (<|startoftext|>=49406, <|endoftext|>=49407)
    OUT/vision/model.onnx    input   pixel_values  float32 [batch, 3, 224, 224]
                             output  image_embeds  float32 [batch, 512]

Each exported model is loaded in onnxruntime and its output compared with
torch (max abs diff printed).

Requires torch, transformers, onnx, onnxscript, onnxruntime, tokenizers and numpy, in a venv of its
own (the package does not need torch):

    python3 -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 transformers onnx onnxscript \
        onnxruntime==1.32.0 tokenizers
    /tmp/export/bin/python bench/clip_export.py --out bench/work/clip-b32-random
    .venv/bin/python bench/search.py --model-dir bench/work/clip-b32-random --label "ViT-B/32, random weights"
    /tmp/export/bin/python bench/clip_export.py --out DIR --exporter legacy   # TorchScript exporter
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>, also CLIP's pad token
VOCAB_SIZE = 49408
MAX_LEN = 77

# openai/clip-vit-base-patch32
TEXT_CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=512,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=8,
    max_position_embeddings=MAX_LEN,
    hidden_act="quick_gelu",
    projection_dim=512,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=1,
)
VISION_CONFIG = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_channels=3,
    image_size=224,
    patch_size=32,
    hidden_act="quick_gelu",
    projection_dim=512,
)

WORDS = """
a an the of and or in on at to from with without by for about over under near
this that these those my your his her its our their some any every no one two
three four five many few more most all both each other another same different
photo picture image painting drawing sketch diagram map chart screenshot logo
dog cat bird horse cow sheep fish mouse rabbit bear lion tiger elephant monkey
car bus truck bike bicycle train plane boat ship road street bridge tunnel city
house building tower church castle room kitchen bedroom office garden park yard
tree flower grass forest mountain hill river lake sea ocean beach sand rock sky
cloud sun moon star rain snow storm night day morning evening sunset sunrise
man woman child boy girl baby person people family friend crowd team player
red green blue yellow black white gray brown orange pink purple gold silver
big small large little tall short long old new young happy sad bright dark
hot cold wet dry clean dirty empty full open closed fast slow beautiful ugly
running walking sitting standing eating drinking playing sleeping reading
writing swimming flying driving riding jumping smiling laughing looking holding
table chair bed sofa desk lamp door window wall floor roof stairs fence sign
book phone computer laptop screen keyboard camera clock cup glass bottle plate
bowl food bread cake pizza apple banana fruit vegetable meat coffee tea water
shirt dress hat shoe coat jacket bag ball toy guitar piano music art game sport
football soccer tennis basketball baseball golf ski skate surf field stadium
is are was were be being been has have had do does did can could will would
very quite just only also not here there where when how what who which why
up down left right front back top bottom inside outside between behind above
""".split()

SPECIAL = {"<|startoftext|>": BOS_ID, "<|endoftext|>": EOS_ID, "[UNK]": 0}


class TextEncoder(torch.nn.Module):
    def __init__(self, model: CLIPTextModelWithProjection):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds


class VisionEncoder(torch.nn.Module):
    def __init__(self, model: CLIPVisionModelWithProjection):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).image_embeds


def build_models():
    torch.manual_seed(0)
    text = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_CONFIG)).eval()
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION_CONFIG)).eval()
    return TextEncoder(text).eval(), VisionEncoder(vision).eval()


def build_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = dict(SPECIAL)
    for w in dict.fromkeys(WORDS):  # dedupe, keep order
        vocab.setdefault(w, len(vocab) - 2)  # ids 1.. (0 is [UNK])
    assert max(i for w, i in vocab.items() if w not in SPECIAL) < BOS_ID
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", BOS_ID), ("<|endoftext|>", EOS_ID)],
    )
    tok.enable_truncation(MAX_LEN)
    return tok


def export(module, args, path, input_names, output_names, dynamic, exporter, opset):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        seq = torch.export.Dim("sequence", min=1, max=MAX_LEN)
        shapes = {
            name: {ax: (batch if label == "batch" else seq) for ax, label in axes.items()}
            for name, axes in dynamic.items()
        }
        torch.onnx.export(
            module, args, path, input_names=input_names, output_names=output_names,
            dynamic_shapes=shapes, opset_version=opset, dynamo=True,
            external_data=False, optimize=True,
        )
    else:
        torch.onnx.export(
            module, args, path, input_names=input_names, output_names=output_names,
            dynamic_axes={**dynamic, output_names[0]: {0: "batch"}},
            opset_version=opset, dynamo=False, do_constant_folding=True,
        )


def check(path, feeds, expected):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)[0]
    diff = float(np.max(np.abs(got - expected)))
    print(f"  {path}: {os.path.getsize(path) / 2**20:.1f} MiB, "
          f"inputs={[(i.name, i.type, i.shape) for i in sess.get_inputs()]}, "
          f"outputs={[(o.name, o.shape) for o in sess.get_outputs()]}, "
          f"max|ort-torch|={diff:.2e}")
    return diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo")
    ap.add_argument("--opset", type=int, default=18)
    a = ap.parse_args()

    text, vision = build_models()
    tok = build_tokenizer()
    text_path = os.path.join(a.out, "text", "model.onnx")
    vision_path = os.path.join(a.out, "vision", "model.onnx")

    enc = tok.encode_batch(["a photo of a dog on the beach", "red car"])
    n = max(len(e.ids) for e in enc)
    ids = np.full((2, n), EOS_ID, dtype=np.int64)
    mask = np.zeros((2, n), dtype=np.int64)
    for r, e in enumerate(enc):
        ids[r, : len(e.ids)] = e.ids
        mask[r, : len(e.ids)] = 1
    pixels = torch.randn(2, 3, 224, 224)

    with torch.no_grad():
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        export(text, (t_ids, t_mask), text_path, ["input_ids", "attention_mask"],
               ["text_embeds"], {"input_ids": {0: "batch", 1: "sequence"},
                                 "attention_mask": {0: "batch", 1: "sequence"}},
               a.exporter, a.opset)
        export(vision, (pixels,), vision_path, ["pixel_values"], ["image_embeds"],
               {"pixel_values": {0: "batch"}}, a.exporter, a.opset)
        tok.save(os.path.join(a.out, "text", "tokenizer.json"))

        print("check against torch:")
        # a different batch / sequence length than the export example
        ids1 = np.array([tok.encode("a small cat sitting on a red sofa near the window").ids],
                        dtype=np.int64)
        mask1 = np.ones_like(ids1)
        check(text_path, {"input_ids": ids1, "attention_mask": mask1},
              text(torch.from_numpy(ids1), torch.from_numpy(mask1)).numpy())
        check(text_path, {"input_ids": ids, "attention_mask": mask},
              text(t_ids, t_mask).numpy())
        px3 = torch.randn(3, 3, 224, 224)
        check(vision_path, {"pixel_values": px3.numpy()}, vision(px3).numpy())


if __name__ == "__main__":
    main()
