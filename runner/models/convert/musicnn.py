"""Turn the musicnn 0.1.0 wheel's TF1 checkpoints into frozen graphs that Essentia runs.

Run as its own process (``python -m runner.models.convert.musicnn WHEEL CHECKPOINT OUT``):
it imports tensorflow (the ``convert`` extra), which must never share a process with
essentia (both register the same TensorFlow ops; the process dies).

The checkpoint's ``.meta`` graph is cut down to the tag and embedding outputs, each variable
becomes a constant holding its checkpoint value, and the is-training placeholder becomes
``False``. ``import_meta_graph`` cannot be used: it fails on TF1.12 graphs under current
TensorFlow. The frozen graph is then simplified for inference and its front-end blocks
rewritten into a faster equivalent (runner.models.convert.musicnn_graph). Besides the
``.pb`` the converter writes MTG-style metadata JSON, so the runner drives the converted
model exactly like MTG's own ``msd-musicnn-1``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import zipfile

from runner.models.convert.musicnn_graph import (
    INPUT,
    IS_TRAINING,
    MEL_BANDS,
    OUTPUTS,
    PATCH_FRAMES,
    inference_only,
    pool_first_conv_blocks,
)


def read_wheel(wheel: str, checkpoint: str, workdir: str) -> tuple[str, list[str]]:
    """Extract one checkpoint folder; return its path prefix and the tag names for it."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.startswith(f"musicnn/{checkpoint}/")]
        if not members:
            raise SystemExit(f"{wheel}: no checkpoint musicnn/{checkpoint}/")
        archive.extractall(workdir, members)
        config = archive.read("musicnn/configuration.py").decode()
    labels = {}
    for node in ast.parse(config).body:  # the tag lists, read without executing the module
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id.endswith("_LABELS"):
                labels[node.targets[0].id] = ast.literal_eval(node.value)
    tags = labels[f"{checkpoint.split('_')[0]}_LABELS"]
    # The checkpoint files are named ".index", ".meta", ...: the prefix is the folder itself.
    return os.path.join(workdir, "musicnn", checkpoint) + os.sep, tags


def checkpoint_graph(prefix: str, outputs: list[str]) -> object:
    """The checkpoint's own graph (variables still variables), cut down to ``outputs``, with
    the TF1.12 shape annotations and device pins current TensorFlow rejects removed."""
    import tensorflow as tf

    meta = tf.compat.v1.MetaGraphDef()
    with open(prefix + ".meta", "rb") as handle:
        meta.ParseFromString(handle.read())
    graph = meta.graph_def
    for node in graph.node:
        node.attr.pop("_output_shapes", None)
        node.device = ""
    return tf.compat.v1.graph_util.extract_sub_graph(graph, outputs)


def freeze(prefix: str) -> tuple[bytes, int]:
    """The frozen GraphDef (serialised) of the checkpoint at ``prefix``, and how many
    front-end blocks were rewritten (see pool_first_conv_blocks)."""
    import tensorflow as tf

    graph = checkpoint_graph(prefix, list(OUTPUTS))
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)  # not the stale "checkpoint" file
    frozen = tf.compat.v1.GraphDef()
    frozen.versions.CopyFrom(graph.versions)
    for node in graph.node:
        if node.op in ("VariableV2", "Variable"):
            value = reader.get_tensor(node.name)
            const = frozen.node.add()
            const.name, const.op = node.name, "Const"
            const.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        elif node.name == IS_TRAINING:
            const = frozen.node.add()
            const.name, const.op = node.name, "Const"
            const.attr["dtype"].type = tf.bool.as_datatype_enum
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(False))
        else:
            copy = frozen.node.add()
            copy.CopyFrom(node)
            for attr in ("grad_a", "grad_b"):  # unknown to Essentia's libtensorflow 2.5
                copy.attr.pop(attr, None)
    frozen, rewritten = pool_first_conv_blocks(inference_only(frozen))
    return frozen.SerializeToString(deterministic=True), rewritten


def metadata(model_id: str, checkpoint: str, tags: list[str], source: str) -> dict:
    """MTG-style metadata: the fields the runner reads to drive inference."""
    dataset = {"MSD": "Million Song Dataset", "MTT": "MagnaTagATune"}[checkpoint.split("_")[0]]
    return {
        "name": f"{checkpoint} (musicnn 0.1.0, converted)",
        "type": "auto-tagging",
        "link": source,
        "version": "1",
        "description": f"musicnn auto-tagging model trained on the {dataset} ({len(tags)} tags), "
                       "converted from its TF1 checkpoint into a frozen graph.",
        "author": "Jordi Pons",
        "license": "ISC",
        "classes": tags,
        "schema": {
            "inputs": [{"name": INPUT, "type": "float", "shape": [PATCH_FRAMES, MEL_BANDS]}],
            "outputs": [
                {"name": name, "type": "float", "shape": [1, width], "output_purpose": purpose}
                for name, (purpose, width) in OUTPUTS.items()
            ],
        },
        "inference": {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"},
        "converted_from": {"checkpoint": f"musicnn/{checkpoint}", "model_id": model_id},
    }


def write_atomic(path: str, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a cache is read by other users too
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel")
    parser.add_argument("checkpoint", help="MSD_musicnn or MTT_musicnn")
    parser.add_argument("graph", help="output .pb")
    parser.add_argument("metadata", help="output .json")
    parser.add_argument("--model-id", default="")
    parser.add_argument("--source", default="", help="the wheel's URL, for the metadata")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory() as work:
        prefix, tags = read_wheel(args.wheel, args.checkpoint, work)
        graph, rewritten = freeze(prefix)
    if rewritten == 0:
        print(f"{args.checkpoint}: no front-end block had the expected shape; the graph is "
              "converted as it is (the same results, about 1.6x slower)", file=sys.stderr)
    write_atomic(args.graph, graph)
    meta = metadata(args.model_id, args.checkpoint, tags, args.source)
    meta["converted_from"]["rewritten_blocks"] = rewritten
    write_atomic(args.metadata, (json.dumps(meta, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
