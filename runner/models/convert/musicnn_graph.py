"""musicnn's frozen graph made fast for inference: its node names, and two rewrites.

``inference_only`` resolves the is-training conditionals (the training branches go);
``pool_first_conv_blocks`` rewrites the front-end blocks into a faster equivalent (about 36%
less CPU time per patch in Essentia's libtensorflow 2.5, the same results up to float
rounding; only ops TensorFlow 2.5 knows). Used by the conversion (runner.models.convert.musicnn),
in its own process: TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OUTPUTS = {  # node -> (output_purpose, width)
    "model/Sigmoid": ("predictions", 50),
    "model/dense/BiasAdd": ("embeddings", 200),
}
INPUT = "model/Placeholder"
IS_TRAINING = "model/Placeholder_2"
PATCH_FRAMES, MEL_BANDS = 187, 96


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
    import tensorflow as tf

    edit = _GraphEdit(graph)
    replaced: set[str] = set()
    blocks = 0
    for conv in graph.node:
        block = _front_end_block(edit, conv)
        if block is None:
            continue
        _rewrite_block(edit, block)
        replaced.update(n.name for n in block.nodes)
        blocks += 1
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph.versions)
    for node in graph.node:
        if node.name not in replaced:
            out.node.add().CopyFrom(node)
    out.node.extend(edit.added)
    return tf.compat.v1.graph_util.extract_sub_graph(out, list(OUTPUTS)), blocks


class _GraphEdit:
    """A graph being rewritten: its nodes and their consumers, and the nodes added to it."""

    def __init__(self, graph: object) -> None:
        self.nodes = {node.name: node for node in graph.node}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for ref in node.input:
                self.consumers.setdefault(_node_of(ref), []).append(node)
        self.added: list = []
        self.transposed: dict[str, str] = {}  # a block input -> its time-major transpose

    def const(self, ref: str) -> object | None:
        """The value of a constant (through Identity nodes); None for anything else."""
        import tensorflow as tf

        node = self.nodes[_node_of(ref)]
        while node.op == "Identity":
            node = self.nodes[_node_of(node.input[0])]
        return tf.make_ndarray(node.attr["value"].tensor) if node.op == "Const" else None

    def only(self, node: object | None, op: str) -> object | None:
        """The one consumer of ``node``, where there is one and it is an ``op``."""
        users = self.consumers.get(node.name, []) if node is not None else []
        return users[0] if len(users) == 1 and users[0].op == op else None

    def add(self, name: str, op: str, inputs: list[str], like: object | None = None,
            **types: int) -> str:
        """A new node (the attributes of ``like``, then ``types``); returns its name."""
        import tensorflow as tf

        node = tf.compat.v1.NodeDef(name=name, op=op, input=inputs)
        if like is not None:
            for key, value in like.attr.items():
                node.attr[key].CopyFrom(value)
        for key, value in types.items():
            node.attr[key].type = value
        self.added.append(node)
        return name

    def add_const(self, name: str, value: object) -> str:
        import tensorflow as tf

        node = tf.compat.v1.NodeDef(name=name, op="Const")
        node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        self.added.append(node)
        return name


@dataclass
class _Block:
    """One front-end block: its nodes, its constants, and the mel bands its pool spans."""

    conv: Any
    bias_add: Any
    relu: Any
    norm: Any
    pool: Any
    squeeze: Any
    kernel: Any  # (taps, width, 1, filters)
    params: list[Any]  # bias, gamma, beta, mean, variance
    bands: int

    @property
    def nodes(self) -> tuple[Any, ...]:
        return (self.conv, self.bias_add, self.relu, self.norm, self.pool, self.squeeze)


def _front_end_block(edit: _GraphEdit, conv: object) -> _Block | None:
    """The block that starts at ``conv``, where it has exactly the shape rewritten here."""
    bias_add = edit.only(conv, "BiasAdd") if conv.op == "Conv2D" else None
    relu = edit.only(bias_add, "Relu")
    norm = edit.only(relu, "FusedBatchNorm")
    pool = edit.only(norm, "MaxPool")
    squeeze = edit.only(pool, "Squeeze")
    if squeeze is None or norm.attr["is_training"].b:
        return None
    kernel = edit.const(conv.input[1])
    params = [edit.const(ref) for ref in (bias_add.input[1], *norm.input[1:5])]
    if kernel is None or kernel.ndim != 4 or any(p is None for p in params):
        return None
    if (list(conv.attr["strides"].list.i) != [1, 1, 1, 1]
            or any(d != 1 for d in conv.attr["dilations"].list.i)
            or {conv.attr["data_format"].s, norm.attr["data_format"].s} != {b"NHWC"}
            or pool.attr["padding"].s != b"VALID"
            or list(squeeze.attr["squeeze_dims"].list.i) != [2]):
        return None
    _, width, channels, _ = kernel.shape
    if conv.attr["padding"].s == b"VALID":
        bands = MEL_BANDS - width + 1
    elif conv.attr["padding"].s == b"SAME" and width == 1:
        bands = MEL_BANDS
    else:
        return None
    if list(pool.attr["ksize"].list.i) != [1, 1, bands, 1] or channels != 1:
        return None
    return _Block(conv, bias_add, relu, norm, pool, squeeze, kernel, params, bands)


def _rewrite_block(edit: _GraphEdit, block: _Block) -> None:
    """Add the faster form of ``block``; its last node takes the name of the block's
    Squeeze, so what consumed the block consumes the new form."""
    import numpy as np

    params = block.params
    sign = np.where(params[1] < 0, -1.0, 1.0).astype(block.kernel.dtype)  # gamma's sign
    kernel, bias = block.kernel * sign, params[0] * sign  # exact: a negation per filter
    scope = block.conv.name.rsplit("/", 1)[0] + "/pool_first"
    if block.conv.attr["padding"].s == b"VALID":  # a timbral block: the same conv, then max
        top, tile = _timbral_max(edit, block, scope, kernel, bias), 1
    else:  # a temporal block: time-major, block-Toeplitz
        top, tile = _temporal_max(edit, block, scope, kernel, bias), TIME_BLOCK
    signed = edit.add(f"{scope}/Mul", "Mul", [top, edit.add_const(
        f"{scope}/sign", np.tile(sign, tile))], T=_dtype("float32"))
    rectified = edit.add(f"{scope}/Relu", "Relu", [signed], like=block.relu)
    normed = edit.add(f"{scope}/FusedBatchNorm", "FusedBatchNorm", [rectified, *[
        edit.add_const(f"{scope}/{name}", np.tile(value, tile)) for name, value in
        zip(("gamma", "beta", "mean", "variance"), params[1:], strict=True)]], like=block.norm)
    if tile == 1:
        edit.add(block.squeeze.name, "Squeeze", [normed], like=block.squeeze)
    else:
        _frames_out(edit, block, scope, normed, tile)


def _timbral_max(edit: _GraphEdit, block: _Block, scope: str, kernel: Any, bias: Any) -> str:
    """The block's own convolution and bias (signed), then the max over bands: (N, T, 1, F)."""
    conved = edit.add(f"{scope}/Conv2D", "Conv2D", [block.conv.input[0], edit.add_const(
        f"{scope}/kernel", kernel)], like=block.conv)
    biased = edit.add(f"{scope}/BiasAdd", "BiasAdd", [conved, edit.add_const(
        f"{scope}/bias", bias)], like=block.bias_add)
    return edit.add(f"{scope}/MaxPool", "MaxPool", [biased], like=block.pool)


def _temporal_max(edit: _GraphEdit, block: _Block, scope: str, kernel: Any, bias: Any) -> str:
    """A k x 1 convolution over time as a block-Toeplitz one on the time-major input (each
    kernel row computes TIME_BLOCK frames), then the max over bands: (N, 1, rows, tile*F)."""
    import numpy as np

    float_t, int_t = _dtype("float32"), _dtype("int32")
    taps, _, _, filters = kernel.shape
    tile = TIME_BLOCK
    rows = -(-PATCH_FRAMES // tile)
    span = taps + tile - 1
    before = (taps - 1) // 2  # SAME padding over time, as Conv2D pads it
    after = rows * tile + taps - 1 - before - PATCH_FRAMES
    toeplitz = np.zeros((span, tile, filters), dtype=kernel.dtype)
    for shift in range(tile):
        toeplitz[shift:shift + taps, shift, :] = kernel[:, 0, 0, :]
    source = block.conv.input[0]
    if source not in edit.transposed:
        perm = edit.add_const(f"{_node_of(source)}/time_major/perm",
                              np.array([0, 2, 1, 3], np.int32))
        edit.transposed[source] = edit.add(f"{_node_of(source)}/time_major", "Transpose",
                                           [source, perm], T=float_t, Tperm=int_t)
    padded = edit.add(f"{scope}/Pad", "Pad", [edit.transposed[source], edit.add_const(
        f"{scope}/Pad/paddings",
        np.array([[0, 0], [0, 0], [before, after], [0, 0]], np.int32))],
        T=float_t, Tpaddings=int_t)
    conved = edit.add(f"{scope}/Conv2D", "Conv2D", [padded, edit.add_const(
        f"{scope}/kernel", toeplitz.reshape(1, span, 1, tile * filters))], like=block.conv)
    edit.added[-1].attr["strides"].list.i[:] = [1, 1, tile, 1]
    edit.added[-1].attr["padding"].s = b"VALID"
    edit.added[-1].attr.pop("explicit_paddings", None)
    biased = edit.add(f"{scope}/BiasAdd", "BiasAdd", [conved, edit.add_const(
        f"{scope}/bias", np.tile(bias, tile))], like=block.bias_add)
    top = edit.add(f"{scope}/Max", "Max", [biased, edit.add_const(
        f"{scope}/Max/axis", np.array([1], np.int32))], T=float_t, Tidx=int_t)
    edit.added[-1].attr["keep_dims"].b = True  # (N, 1, rows, tile * F)
    return top


def _frames_out(edit: _GraphEdit, block: _Block, scope: str, normed: str, tile: int) -> None:
    """The time-blocked rows back to (N, frames, F), cut to the patch's frames."""
    import numpy as np

    float_t, int_t = _dtype("float32"), _dtype("int32")
    filters = block.kernel.shape[3]
    frames = -(-PATCH_FRAMES // tile) * tile
    shaped = edit.add(block.squeeze.name if frames == PATCH_FRAMES else f"{scope}/Reshape",
                      "Reshape", [normed, edit.add_const(f"{scope}/Reshape/shape", np.array(
                          [-1, frames, filters], np.int32))], T=float_t, Tshape=int_t)
    if frames != PATCH_FRAMES:
        edit.add(block.squeeze.name, "Slice", [shaped, edit.add_const(
            f"{scope}/Slice/begin", np.zeros(3, np.int32)), edit.add_const(
            f"{scope}/Slice/size", np.array([-1, PATCH_FRAMES, -1], np.int32))],
            T=float_t, Index=int_t)


def _dtype(name: str) -> int:
    """A TensorFlow dtype's enum (TensorFlow is imported inside functions: see main)."""
    import tensorflow as tf

    return tf.as_dtype(name).as_datatype_enum
