"""Evaluate a musicnn checkpoint directly in TensorFlow: the reference for the conversion.

``python tests/musicnn_checkpoint_eval.py WHEEL CHECKPOINT PATCHES.npy OUT.npy [EMB.npy]``
imports the checkpoint's own graph with its variables (not the frozen conversion), restores
every variable from the checkpoint, and writes the tag probabilities (and the embeddings) for
the given mel patches.
Runs in its own process: tensorflow and essentia never share one.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from runner.models.convert.musicnn import IS_TRAINING, checkpoint_graph, read_wheel  # noqa: E402

tf1 = tf.compat.v1
TAGS, EMBEDDINGS = "model/Sigmoid", "model/dense/BiasAdd"


def main(wheel: str, checkpoint: str, patches_file: str, out_file: str,
         embeddings_file: str | None = None) -> None:
    tf1.disable_eager_execution()
    with tempfile.TemporaryDirectory() as work:
        prefix, _ = read_wheel(wheel, checkpoint, work)
        # the checkpoint's graph with its variables; they are restored below, not frozen
        graph_def = checkpoint_graph(prefix, [TAGS, EMBEDDINGS])
        reader = tf1.train.NewCheckpointReader(prefix)
        graph = tf.Graph()
        with graph.as_default():
            tf1.import_graph_def(graph_def, name="")
            assigns = []
            for node in graph_def.node:
                if node.op in ("VariableV2", "Variable"):
                    ref = graph.get_tensor_by_name(node.name + ":0")
                    assigns.append(tf1.assign(ref, reader.get_tensor(node.name)))
            with tf1.Session(graph=graph) as session:
                session.run(assigns)
                patches = np.load(patches_file)
                probs, embeddings = session.run([TAGS + ":0", EMBEDDINGS + ":0"], feed_dict={
                    "model/Placeholder:0": patches, IS_TRAINING + ":0": False})
    np.save(out_file, probs)
    if embeddings_file:
        np.save(embeddings_file, embeddings)


if __name__ == "__main__":
    main(*sys.argv[1:6])
