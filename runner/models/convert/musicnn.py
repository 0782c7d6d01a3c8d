"""Turn the musicnn 0.1.0 wheel's TF1 checkpoints into frozen graphs that Essentia runs.

Run as its own process (``python -m runner.models.convert.musicnn WHEEL CHECKPOINT OUT``):
it imports tensorflow (the ``convert`` extra), which must never share a process with
essentia (both register the same TensorFlow ops; the process dies).

The checkpoint's ``.meta`` graph is cut down to the tag and embedding outputs, each variable
becomes a constant holding its checkpoint value, and the is-training placeholder becomes
``False``. ``import_meta_graph`` cannot be used: it fails on TF1.12 graphs under current
TensorFlow. The frozen graph is then simplified for inference (``inference_only``: the
training branches go) and its front-end blocks rewritten into a faster equivalent
(``pool_first_conv_blocks``: about 36% less CPU time per patch in Essentia's libtensorflow
2.5, the same results up to float rounding; only ops TensorFlow 2.5 knows). Besides the
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

OUTPUTS = {  # node -> (output_purpose, width)
    "model/Sigmoid": ("predictions", 50),
    "model/dense/BiasAdd": ("embeddings", 200),
}
INPUT = "model/Placeholder"
IS_TRAINING = "model/Placeholder_2"
PATCH_FRAMES, MEL_BANDS = 187, 96


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


def _node_of(ref: str) -> str:
    return ref.lstrip("^").split(":")[0]


def _port_of(ref: str) -> int:
    return int(ref.split(":")[1]) if ":" in ref and not ref.startswith("^") else 0


def inference_only(graph: object) -> object:
    """The graph with the is-training conditionals resolved: the training branches (batch
    statistics, dropout's random mask) removed, each ``Switch``/``Merge`` pair replaced by
    the inference branch it always took. The same operations on the same values: only dead
    nodes go, so the runtime no longer executes them on every call."""
    import tensorflow as tf

    nodes = {node.name: node for node in graph.node}

    def is_false(ref: str) -> bool:  # the pred, through the cond's Identity nodes
        node = nodes[_node_of(ref)]
        while node.op == "Identity":
            node = nodes[_node_of(node.input[0])]
        return node.name == IS_TRAINING

    switches = {n.name for n in graph.node if n.op == "Switch" and is_false(n.input[1])}
    dead: set[str] = set()
    order = _topological(graph)

    def ref_dead(ref: str) -> bool:
        name = _node_of(ref)
        return name in dead or (name in switches and not ref.startswith("^")
                                and _port_of(ref) == 1)

    for node in order:
        refs = [ref_dead(ref) for ref in node.input]
        if (node.op == "Merge" and all(refs)) or (node.op != "Merge" and any(refs)):
            dead.add(node.name)
    replace: dict[str, str] = {}  # live Switch outputs and Merges -> the tensor they pass on
    for node in order:
        if node.name in dead:
            continue
        if node.name in switches:
            replace[node.name] = replace.get(node.input[0], node.input[0])
        elif node.op == "Merge":
            (live,) = [ref for ref in node.input if not ref_dead(ref)]
            replace[node.name] = replace.get(live, live)
    pruned = tf.compat.v1.GraphDef()
    pruned.versions.CopyFrom(graph.versions)
    for node in graph.node:
        if node.name in dead or node.name in replace:
            continue
        copy = pruned.node.add()
        copy.CopyFrom(node)
        for i, ref in enumerate(node.input):
            if _node_of(ref) in replace:
                if ref.startswith("^") or _port_of(ref) != 0:
                    raise ValueError(f"{node.name}: unexpected input {ref}")
                copy.input[i] = replace[_node_of(ref)]
    return tf.compat.v1.graph_util.extract_sub_graph(pruned, list(OUTPUTS))


def _topological(graph: object) -> list:
    nodes = {node.name: node for node in graph.node}
    done: set[str] = set()
    order = []
    for root in graph.node:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node.name in done:
                continue
            if expanded:
                done.add(node.name)
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((nodes[_node_of(ref)], False) for ref in node.input
                         if _node_of(ref) not in done)
    return order


TIME_BLOCK = 8  # output frames per row of the block-Toeplitz temporal kernels


def pool_first_conv_blocks(graph: object) -> tuple[object, int]:
    """musicnn's front-end blocks, Conv2D -> BiasAdd -> ReLU -> batch norm -> max over all
    mel bands, rewritten to give the same values faster:

    * The max over bands comes first, on the convolution output, so ReLU and batch norm run
      on one value per frame and filter instead of one per band. Both are monotonic per
      filter (batch norm decreasing where gamma < 0), so the max of the normalised values is
      the normalised max, or the normalised min where gamma < 0; the min is taken as the max
      of the negated filter (kernel and bias negated: exactly the negated sums) and negated
      back. The same float values, bit for bit.
    * The temporal filters (k x 1 kernels over time, one per band) are computed with the
      bands transposed ahead of time, so that a k x 1 patch is contiguous, and with a
      block-Toeplitz kernel: each kernel row computes ``TIME_BLOCK`` successive frames (the
      same weights, shifted, exact zeros elsewhere). TensorFlow's CPU convolution spent a
      third of the graph's time on these, a seventh of its multiply-adds. The same sums of
      the same products; only the order of the additions differs (float rounding).

    Returns the graph and the number of blocks rewritten (a block of another shape is left
    as it is: correct, only slower)."""
    import numpy as np
    import tensorflow as tf

    nodes = {node.name: node for node in graph.node}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for ref in node.input:
            consumers.setdefault(_node_of(ref), []).append(node)

    def const(ref: str) -> np.ndarray | None:
        node = nodes[_node_of(ref)]
        while node.op == "Identity":
            node = nodes[_node_of(node.input[0])]
        return tf.make_ndarray(node.attr["value"].tensor) if node.op == "Const" else None

    def only(node: object | None, op: str) -> object | None:
        users = consumers.get(node.name, []) if node is not None else []
        return users[0] if len(users) == 1 and users[0].op == op else None

    float_t, int_t = tf.float32.as_datatype_enum, tf.int32.as_datatype_enum
    added: list = []

    def add(name: str, op: str, inputs: list[str], like: object | None = None,
            **types: int) -> str:
        node = tf.compat.v1.NodeDef(name=name, op=op, input=inputs)
        if like is not None:
            for key, value in like.attr.items():
                node.attr[key].CopyFrom(value)
        for key, value in types.items():
            node.attr[key].type = value
        added.append(node)
        return name

    def add_const(name: str, value: np.ndarray) -> str:
        node = tf.compat.v1.NodeDef(name=name, op="Const")
        node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        added.append(node)
        return name

    replaced: set[str] = set()
    blocks = 0
    transposed: dict[str, str] = {}
    for conv in graph.node:
        bias_add = only(conv, "BiasAdd") if conv.op == "Conv2D" else None
        relu = only(bias_add, "Relu")
        norm = only(relu, "FusedBatchNorm")
        pool = only(norm, "MaxPool")
        squeeze = only(pool, "Squeeze")
        if squeeze is None or norm.attr["is_training"].b:
            continue
        kernel = const(conv.input[1])
        params = [const(ref) for ref in (bias_add.input[1], *norm.input[1:5])]
        if kernel is None or kernel.ndim != 4 or any(p is None for p in params):
            continue
        if (list(conv.attr["strides"].list.i) != [1, 1, 1, 1]
                or any(d != 1 for d in conv.attr["dilations"].list.i)
                or {conv.attr["data_format"].s, norm.attr["data_format"].s} != {b"NHWC"}
                or pool.attr["padding"].s != b"VALID"
                or list(squeeze.attr["squeeze_dims"].list.i) != [2]):
            continue
        taps, width, channels, filters = kernel.shape
        if conv.attr["padding"].s == b"VALID":
            bands = MEL_BANDS - width + 1
        elif conv.attr["padding"].s == b"SAME" and width == 1:
            bands = MEL_BANDS
        else:
            continue
        if list(pool.attr["ksize"].list.i) != [1, 1, bands, 1] or channels != 1:
            continue
        sign = np.where(params[1] < 0, -1.0, 1.0).astype(kernel.dtype)  # gamma's sign
        kernel, bias = kernel * sign, params[0] * sign  # exact: a negation per filter
        scope = conv.name.rsplit("/", 1)[0] + "/pool_first"
        if conv.attr["padding"].s == b"VALID":  # a timbral block: the same conv, then max
            conved = add(f"{scope}/Conv2D", "Conv2D", [conv.input[0], add_const(
                f"{scope}/kernel", kernel)], like=conv)
            biased = add(f"{scope}/BiasAdd", "BiasAdd", [conved, add_const(
                f"{scope}/bias", bias)], like=bias_add)
            top = add(f"{scope}/MaxPool", "MaxPool", [biased], like=pool)  # (N, T, 1, F)
            tile = 1
        else:  # a temporal block: time-major, block-Toeplitz
            tile = TIME_BLOCK
            rows = -(-PATCH_FRAMES // tile)
            span = taps + tile - 1
            before = (taps - 1) // 2  # SAME padding over time, as Conv2D pads it
            after = rows * tile + taps - 1 - before - PATCH_FRAMES
            toeplitz = np.zeros((span, tile, filters), dtype=kernel.dtype)
            for shift in range(tile):
                toeplitz[shift:shift + taps, shift, :] = kernel[:, 0, 0, :]
            source = conv.input[0]
            if source not in transposed:
                perm = add_const(f"{_node_of(source)}/time_major/perm",
                                 np.array([0, 2, 1, 3], np.int32))
                transposed[source] = add(f"{_node_of(source)}/time_major", "Transpose",
                                         [source, perm], T=float_t, Tperm=int_t)
            padded = add(f"{scope}/Pad", "Pad", [transposed[source], add_const(
                f"{scope}/Pad/paddings",
                np.array([[0, 0], [0, 0], [before, after], [0, 0]], np.int32))],
                T=float_t, Tpaddings=int_t)
            conved = add(f"{scope}/Conv2D", "Conv2D", [padded, add_const(
                f"{scope}/kernel", toeplitz.reshape(1, span, 1, tile * filters))], like=conv)
            added[-1].attr["strides"].list.i[:] = [1, 1, tile, 1]
            added[-1].attr["padding"].s = b"VALID"
            added[-1].attr.pop("explicit_paddings", None)
            biased = add(f"{scope}/BiasAdd", "BiasAdd", [conved, add_const(
                f"{scope}/bias", np.tile(bias, tile))], like=bias_add)
            top = add(f"{scope}/Max", "Max", [biased, add_const(
                f"{scope}/Max/axis", np.array([1], np.int32))], T=float_t, Tidx=int_t)
            added[-1].attr["keep_dims"].b = True  # (N, 1, rows, tile * F)
        signed = add(f"{scope}/Mul", "Mul", [top, add_const(
            f"{scope}/sign", np.tile(sign, tile))], T=float_t)
        rectified = add(f"{scope}/Relu", "Relu", [signed], like=relu)
        normed = add(f"{scope}/FusedBatchNorm", "FusedBatchNorm", [rectified, *[add_const(
            f"{scope}/{name}", np.tile(value, tile)) for name, value in
            zip(("gamma", "beta", "mean", "variance"), params[1:], strict=True)]], like=norm)
        if tile == 1:
            add(squeeze.name, "Squeeze", [normed], like=squeeze)
        else:
            frames = -(-PATCH_FRAMES // tile) * tile
            shaped = add(squeeze.name if frames == PATCH_FRAMES else f"{scope}/Reshape",
                         "Reshape", [normed, add_const(f"{scope}/Reshape/shape", np.array(
                             [-1, frames, filters], np.int32))], T=float_t, Tshape=int_t)
            if frames != PATCH_FRAMES:
                add(squeeze.name, "Slice", [shaped, add_const(
                    f"{scope}/Slice/begin", np.zeros(3, np.int32)), add_const(
                    f"{scope}/Slice/size", np.array([-1, PATCH_FRAMES, -1], np.int32))],
                    T=float_t, Index=int_t)
        replaced.update(n.name for n in (conv, bias_add, relu, norm, pool, squeeze))
        blocks += 1
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph.versions)
    for node in graph.node:
        if node.name not in replaced:
            out.node.add().CopyFrom(node)
    out.node.extend(added)
    return tf.compat.v1.graph_util.extract_sub_graph(out, list(OUTPUTS)), blocks


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
