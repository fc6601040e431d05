"""all-MiniLM-L6-v2's forward pass as an ONNX graph, written from the shipped ``safetensors``
weights in memory (no file is converted or cached): BERT → mean pooling over real tokens → L2
normalisation, as sentence-transformers computes it. (The ``onnx`` package takes half a second
to import: ``SentenceEncoder`` imports this module when it loads, in the background.)

Only standard ONNX operators (opset 20: ``LayerNormalization``, exact ``Gelu``); ONNX Runtime
fuses what it can when it loads the graph. Layout choices that save work per layer: query, key
and value are one matrix product, and 1/√d is folded into the query's weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

LAYERS, HEADS, WIDTH = 6, 12, 384
HEAD = WIDTH // HEADS
EPS = 1e-12  # BERT's LayerNorm epsilon; also the floor of the pooled vector's norm
OPSET = 20  # Gelu and LayerNormalization as standard operators


class _GraphWriter:
    """Collects nodes and tensors; each node's output gets a fresh name unless one is given.
    The model's weights are external initializers: the graph names them and ``weights`` holds
    their arrays, handed to ONNX Runtime as they are (not serialized into the graph and parsed
    back, which doubled the memory a load needs)."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self.tensors: list[TensorProto] = []
        self.weights: dict[str, np.ndarray] = {}

    def weight(self, name: str, value: np.ndarray) -> str:
        value = np.ascontiguousarray(value, dtype=np.float32)
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=value.shape,
                             data_location=TensorProto.EXTERNAL)
        for key, text in (("location", "weights"), ("offset", "0"),
                          ("length", str(value.nbytes))):
            tensor.external_data.add(key=key, value=text)
        self.tensors.append(tensor)
        self.weights[name] = value
        return name

    def constant(self, name: str, value: np.ndarray) -> str:
        """A small tensor (a shape, an axis, a scalar) written into the graph itself."""
        self.tensors.append(numpy_helper.from_array(np.asarray(value, order="C"), name))
        return name

    def ints(self, name: str, values: list[int]) -> str:
        return self.constant(name, np.array(values, dtype=np.int64))

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attributes: object) -> str:
        out = out or f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attributes))
        return out

    def linear(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """``x @ weight.T + bias`` (torch's Linear layout: weight is out × in)."""
        product = self.op("MatMul", x, self.weight(name + ".w", weight.T))
        return self.op("Add", product, self.weight(name + ".b", bias))

    def layer_norm(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        return self.op("LayerNormalization", x, self.weight(name + ".w", weight),
                       self.weight(name + ".b", bias), axis=-1, epsilon=EPS)


def _attention(g: _GraphWriter, x: str, key_bias: str, i: int,
               w: Mapping[str, np.ndarray]) -> str:
    """Self-attention of layer ``i`` (before its output projection): (batch, length, width)."""
    p = f"encoder.layer.{i}.attention.self."
    scale = np.float32(1.0 / np.sqrt(HEAD))
    qkv = g.linear(x, f"l{i}.qkv",
                   np.concatenate([w[p + "query.weight"] * scale, w[p + "key.weight"],
                                   w[p + "value.weight"]]),
                   np.concatenate([w[p + "query.bias"] * scale, w[p + "key.bias"],
                                   w[p + "value.bias"]]))
    heads = g.op("Reshape", qkv, g.ints(f"l{i}.split_heads", [0, 0, 3, HEADS, HEAD]))
    heads = g.op("Transpose", heads, perm=[2, 0, 3, 1, 4])  # (3, batch, heads, length, head)
    q, k, v = (g.op("Gather", heads, g.constant(f"l{i}.{name}", np.int64(n)), axis=0)
               for n, name in enumerate("qkv"))  # a scalar index: the axis goes
    scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
    weights = g.op("Softmax", g.op("Add", scores, key_bias), axis=-1)
    mixed = g.op("Transpose", g.op("MatMul", weights, v), perm=[0, 2, 1, 3])
    return g.op("Reshape", mixed, g.ints(f"l{i}.join_heads", [0, 0, WIDTH]))


def _layer(g: _GraphWriter, x: str, key_bias: str, i: int, w: Mapping[str, np.ndarray]) -> str:
    p = f"encoder.layer.{i}."
    mixed = _attention(g, x, key_bias, i, w)
    out = g.linear(mixed, f"l{i}.attention_out", w[p + "attention.output.dense.weight"],
                   w[p + "attention.output.dense.bias"])
    x = g.layer_norm(g.op("Add", out, x), f"l{i}.norm1",
                     w[p + "attention.output.LayerNorm.weight"],
                     w[p + "attention.output.LayerNorm.bias"])
    up = g.linear(x, f"l{i}.up", w[p + "intermediate.dense.weight"],
                  w[p + "intermediate.dense.bias"])
    down = g.linear(g.op("Gelu", up), f"l{i}.down", w[p + "output.dense.weight"],
                    w[p + "output.dense.bias"])
    return g.layer_norm(g.op("Add", down, x), f"l{i}.norm2", w[p + "output.LayerNorm.weight"],
                        w[p + "output.LayerNorm.bias"])


def sentence_graph(w: Mapping[str, np.ndarray]) -> tuple[bytes, dict[str, np.ndarray]]:
    """The serialized ONNX model, and its weights by name (external initializers).
    Inputs: ``input_ids`` and ``attention_mask`` (int64, batch × length, 1 for real tokens);
    output: ``embeddings`` (float32, batch × 384, unit length)."""
    if w["embeddings.word_embeddings.weight"].shape[1] != WIDTH:
        raise ValueError("these weights are not all-MiniLM-L6-v2's (another width)")
    g = _GraphWriter()
    words = g.weight("words", w["embeddings.word_embeddings.weight"])
    # token type 0 for every token, as sentence-transformers encodes single texts
    positions = g.weight("positions", w["embeddings.position_embeddings.weight"]
                         + w["embeddings.token_type_embeddings.weight"][0])
    length = g.op("Gather", g.op("Shape", "input_ids"), g.ints("length_axis", [1]), axis=0)
    x = g.op("Add", g.op("Gather", words, "input_ids"),
             g.op("Slice", positions, g.ints("zero", [0]), length, g.ints("rows", [0])))
    x = g.layer_norm(x, "embeddings.norm", w["embeddings.LayerNorm.weight"],
                     w["embeddings.LayerNorm.bias"])
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    # 0 for real tokens, -1e9 for padding, broadcast over heads and query rows
    key_bias = g.op("Mul", g.op("Sub", mask, g.constant("one", np.float32(1.0))),
                    g.constant("far", np.float32(1e9)))
    key_bias = g.op("Unsqueeze", key_bias, g.ints("head_and_row_axes", [1, 2]))
    for i in range(LAYERS):
        x = _layer(g, x, key_bias, i, w)
    summed = g.op("ReduceSum", g.op("Mul", x, g.op("Unsqueeze", mask, g.ints("width_axis", [2]))),
                  g.ints("token_axis", [1]), keepdims=0)
    mean = g.op("Div", summed, g.op("ReduceSum", mask, "token_axis", keepdims=1))
    norm = g.op("Max", g.op("ReduceL2", mean, g.ints("last_axis", [-1]), keepdims=1),
                g.constant("eps", np.float32(EPS)))
    g.op("Div", mean, norm, out="embeddings")
    ids = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "length"])
           for name in ("input_ids", "attention_mask")]
    out = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", WIDTH])
    graph = helper.make_graph(g.nodes, "all-MiniLM-L6-v2", ids, [out], g.tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=10)
    return model.SerializeToString(), g.weights
