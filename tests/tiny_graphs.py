"""Build tiny frozen TensorFlow graphs with MTG's node names, plus their metadata JSON.

Run in its own process (``python tests/tiny_graphs.py OUT``): it imports tensorflow, which
must never share a process with essentia. The graphs are small but real: a log-mel patch goes
through a fixed random projection, so different sounds give different outputs, and every
inference path of the runner (MusiCNN, EffnetDiscogs with its fixed batch of 64, VGGish,
2D heads, both old ``model/...`` and new ``serving_default_...``/``PartitionedCall`` names)
is exercised without downloading anything.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1


def _freeze(build, outputs: list[str]) -> bytes:
    graph = tf.Graph()
    with graph.as_default():
        build()
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            frozen = tf1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), [o.split(":")[0] for o in outputs])
    for node in frozen.node:  # unknown to Essentia's libtensorflow 2.5
        for attr in ("grad_a", "grad_b"):
            node.attr.pop(attr, None)
    return frozen.SerializeToString()


def _dense(x, width: int, seed: int, name: str):
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 1 / np.sqrt(int(x.shape[-1])), (int(x.shape[-1]), width))
    bias = rng.normal(0, 0.1, width)
    w = tf1.Variable(weights.astype(np.float32), name=f"{name}_w")
    b = tf1.Variable(bias.astype(np.float32), name=f"{name}_b")
    return tf.add(tf.matmul(x, w), b, name=name)


def _summary(patch):
    """Per-band mean and std over time: (batch, 2 * bands), a cheap timbre summary."""
    mean = tf.reduce_mean(patch, axis=1)
    std = tf.math.reduce_std(patch, axis=1)
    return tf.concat([mean, std], axis=1)


def embedding_graph(input_name: str, shape: list, emb_name: str, pred_name: str,
                    classes: int, width: int, seed: int, partitioned: bool) -> tuple[bytes, list]:
    def build() -> None:
        x = tf1.placeholder(tf.float32, shape, name=input_name)
        hidden = tf.nn.tanh(_dense(_summary(x), 16, seed, "hidden"))
        emb = _dense(hidden, width, seed + 1, "emb")
        logits = _dense(tf.nn.tanh(emb), classes, seed + 2, "logits")
        if partitioned:  # EffnetDiscogs: one node, two outputs (PartitionedCall:0 and :1)
            tf.identity_n([tf.sigmoid(logits), emb], name="PartitionedCall")
        else:
            tf.identity(emb, name=emb_name)
            tf.sigmoid(logits, name=pred_name)

    outputs = ["PartitionedCall"] if partitioned else [emb_name, pred_name]
    return _freeze(build, outputs), outputs


def head_graph(input_name: str, width: int, output_name: str, classes: int, seed: int) -> bytes:
    def build() -> None:
        x = tf1.placeholder(tf.float32, [None, width], name=input_name)
        logits = _dense(x, classes, seed, "head")
        if output_name == "PartitionedCall:0":
            tf.identity_n([tf.nn.softmax(logits)], name="PartitionedCall")
        else:
            tf.nn.softmax(logits, name=output_name)

    return _freeze(build, [output_name])


def openl3_graph(bands: int, width: int, seed: int) -> bytes:
    """OpenL3's node names and shapes as in Essentia's graphs: ``melspectrogram`` (batch, bands,
    199, 1) -> ``embeddings`` (batch, width), through each band's mean and spread over time."""
    def build() -> None:
        x = tf1.placeholder(tf.float32, [None, bands, 199, 1], name="melspectrogram")
        patch = tf.transpose(tf.reshape(x, [-1, bands, 199]), [0, 2, 1])  # (batch, time, bands)
        hidden = tf.nn.tanh(_dense(_summary(patch) / 40.0, 16, seed, "hidden"))
        tf.identity(_dense(hidden, width, seed + 1, "emb"), name="embeddings")

    return _freeze(build, ["embeddings"])


def metadata(algorithm: str, inputs: str, outputs: list[tuple[str, str]], classes: list[str],
             embedding: str | None = None) -> dict:
    meta = {
        "name": f"tiny {algorithm} test model",
        "type": "test",
        "classes": classes,
        "schema": {"inputs": [{"name": inputs, "type": "float"}],
                   "outputs": [{"name": n, "type": "float", "output_purpose": p}
                               for n, p in outputs]},
        "inference": {"sample_rate": 16000, "algorithm": algorithm},
    }
    if embedding:
        meta["inference"]["embedding_model"] = {"algorithm": "x", "model_name": embedding}
    return meta


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    models: dict[str, tuple[bytes, dict]] = {}
    tags = ["bright", "dark", "noisy", "tonal", "busy"]
    pb, _ = embedding_graph("model/Placeholder", [None, 187, 96], "model/dense/BiasAdd",
                            "model/Sigmoid", 5, 8, 1, False)
    models["tiny-musicnn"] = (pb, metadata(
        "TensorflowPredictMusiCNN", "model/Placeholder",
        [("model/Sigmoid", "predictions"), ("model/dense/BiasAdd", "embeddings")], tags))
    pb, _ = embedding_graph("serving_default_melspectrogram", [64, 128, 96], "", "", 4, 6, 11,
                            True)
    models["tiny-effnet"] = (pb, metadata(
        "TensorflowPredictEffnetDiscogs", "serving_default_melspectrogram",
        [("PartitionedCall:0", "predictions"), ("PartitionedCall:1", "embeddings")],
        ["style_a", "style_b", "style_c", "style_d"]))
    pb, _ = embedding_graph("model/Placeholder", [None, 96, 64], "model/vggish/embeddings",
                            "model/Sigmoid", 3, 7, 21, False)
    models["tiny-vggish"] = (pb, metadata(
        "TensorflowPredictVGGish", "model/Placeholder",
        [("model/Sigmoid", "predictions"), ("model/vggish/embeddings", "embeddings")],
        ["speech", "music", "noise"]))
    mirex = ["passionate", "cheerful", "brooding", "quirky", "aggressive"]
    models["tiny-moods-musicnn"] = (head_graph("model/Placeholder", 8, "model/Softmax", 5, 31),
                                    metadata("TensorflowPredict2D", "model/Placeholder",
                                             [("model/Softmax", "predictions")], mirex,
                                             "tiny-musicnn"))
    models["tiny-party-musicnn"] = (head_graph("model/Placeholder", 8, "model/Softmax", 2, 41),
                                    metadata("TensorflowPredict2D", "model/Placeholder",
                                             [("model/Softmax", "predictions")],
                                             ["non_party", "party"], "tiny-musicnn"))
    models["tiny-genre-effnet"] = (
        head_graph("serving_default_model_Placeholder", 6, "PartitionedCall:0", 3, 51),
        metadata("TensorflowPredict2D", "serving_default_model_Placeholder",
                 [("PartitionedCall:0", "predictions")], ["Rock", "Jazz", "Electronic"],
                 "tiny-effnet"))
    with open(os.path.join(out, "tiny-openl3.pb"), "wb") as handle:  # no metadata: kind openl3
        handle.write(openl3_graph(256, 512, 61))
    for model_id, (graph, meta) in models.items():
        with open(os.path.join(out, f"{model_id}.pb"), "wb") as handle:
            handle.write(graph)
        with open(os.path.join(out, f"{model_id}.json"), "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
