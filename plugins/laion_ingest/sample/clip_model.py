"""A tiny CLIP for the generated mirror: the real model's files, inputs and outputs, 500 kB of weights.

No CLIP weights can be downloaded where the tests and the quickstart run, so the mirror comes with
a model directory in clip.py's layout:
- text/tokenizer.json: a word-level tokenizer over the mirror's words, lower-cased, wrapped in
  CLIP's start and end tokens, unknown words to [UNK].
- text/model.onnx: the sum of the token embeddings under the attention mask.
- vision/model.onnx: 8x8 average colours through a random projection.

Weights are random except one thing: each noun's embedding points at the mirror's clusters whose
captions use that noun. So "a dog" finds the dog rows, as the real model would on LAION, and a
test can see that a text query works end to end.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from laion_ingest.sample import mirror

SPECIAL = ["<|startoftext|>", "<|endoftext|>", "[UNK]"]
WORDS = ["a", "an", "the", "and", "of", "with", "photo", "picture", *mirror.ADJECTIVES, *mirror.NOUNS]
POOL = 28  # 224 / 28 = 8x8 cells of average colour


def write_model(out: Path, seed: int = 0, dim: int = 512) -> Path:
    """Write text/ and vision/ under out (idempotent) for vectors of `dim` (512 as ViT-B/32's, 768 as
    ViT-L/14's, matching the sample mirror of that dimension); returns out."""
    out = Path(out)
    (out / "text").mkdir(parents=True, exist_ok=True)
    (out / "vision").mkdir(parents=True, exist_ok=True)
    _tokenizer().save(str(out / "text" / "tokenizer.json"))
    rng = np.random.default_rng([seed, dim])
    _save(_text_graph(_token_embeddings(rng, seed, dim), dim), out / "text" / "model.onnx")
    _save(_vision_graph(rng.standard_normal((3 * (224 // POOL) ** 2, dim)).astype(np.float32), dim),
          out / "vision" / "model.onnx")
    return out


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)])
    return tokenizer


def _token_embeddings(rng: np.random.Generator, seed: int, dim: int) -> np.ndarray:
    """Small random vectors; a noun's is the mean direction of its clusters' centres."""
    table = rng.standard_normal((len(SPECIAL) + len(WORDS), dim)).astype(np.float32) * 0.02
    centres = mirror.cluster_centres(seed, dim)
    for n, noun in enumerate(mirror.NOUNS):
        direction = centres[n::len(mirror.NOUNS)].sum(axis=0)
        table[len(SPECIAL) + WORDS.index(noun)] = direction / np.linalg.norm(direction)
    return table


def _text_graph(table: np.ndarray, dim: int):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["text_embeds"], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
              for name in ("input_ids", "attention_mask")]
    weights = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([2], np.int64), "axis2"),
               numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    output = helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])
    return helper.make_graph(nodes, "tiny_clip_text", inputs, [output], weights)


def _vision_graph(projection: np.ndarray, dim: int):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["cells"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Flatten", ["cells"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], ["image_embeds"]),
    ]
    pixels = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])
    output = helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])
    return helper.make_graph(nodes, "tiny_clip_vision", [pixels], [output],
                             [numpy_helper.from_array(projection, "projection")])


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # read by every ONNX Runtime since 1.10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
