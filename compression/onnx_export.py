"""Export of torch networks to ONNX (opset >= 18), checking, metadata and PyTorch parity.

The exported graph carries its own description: a ``fuxiops`` entry in the
model's ``metadata_props`` (JSON: coordinates, normalisation, inputs, the
checkpoint it came from) and the same JSON in a sidecar ``<model>.onnx.json``
for people and tools that do not parse ONNX. Models above
``EXTERNAL_DATA_THRESHOLD`` bytes keep their weights in ``<model>.onnx.data``
(ONNX external data) so that the 2 GiB protobuf limit never bites.

The fp16 conversion for GPU serving converts only the normalised network body
(the nodes exported from ``ForecastModule.net``): the input normalisation,
condition planes and the residual de-normalisation work on physical units
(MSL ~1e5 Pa is beyond the fp16 maximum 65504) and stay fp32, with Casts at
the body's boundary. ``fuxiops.compression.export.fp16_parity`` measures the
result against fp32 (ONNX Runtime CPU runs fp16 graphs too, slowly).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from fuxiops.errors import FuxiopsError
from fuxiops.logs import get_logger

log = get_logger(__name__)

METADATA_KEY = "fuxiops"
#: Above this size (bytes of weights) the weights go to an external data file.
EXTERNAL_DATA_THRESHOLD = 1 << 30
MIN_OPSET = 18

Exporter = Literal["auto", "dynamo", "legacy"]


class OnnxExportError(FuxiopsError):
    """The network could not be exported, or the exported model is invalid or not faithful."""


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".json")


def _export_raw(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, input_names: Sequence[str],
                output_names: Sequence[str], opset: int, exporter: Exporter,
                dynamic_batch: bool) -> str:
    errors: list[str] = []
    order = {"auto": ("dynamo", "legacy"), "dynamo": ("dynamo",), "legacy": ("legacy",)}[exporter]
    for kind in order:
        try:
            if kind == "dynamo":
                dyn = None
                if dynamic_batch:
                    batch = torch.export.Dim("batch", min=1, max=1024)
                    dyn = {n: {0: batch} for n in input_names}
                onnx_program = torch.onnx.export(module, inputs, input_names=list(input_names),
                                                 output_names=list(output_names), opset_version=opset,
                                                 dynamo=True, dynamic_shapes=dyn, verbose=False,
                                                 external_data=False)
                # Save through onnx ourselves below (external data decided by size); keep graph only here.
                onnx_program.save(str(path), external_data=True)
            else:
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    # Shape checks in the network become constants: intended, the graph is per grid.
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
                    torch.onnx.export(module, inputs, str(path), input_names=list(input_names),
                                      output_names=list(output_names), opset_version=opset, dynamo=False,
                                      dynamic_axes=axes, do_constant_folding=True)
            return kind
        except Exception as e:  # the exporters raise many unrelated types; report them all
            errors.append(f"{kind} exporter: {type(e).__name__}: {str(e)[:500]}")
            log.warning("ONNX exporter failed", extra={"fields": {"exporter": kind, "error": str(e)[:200]}})
    raise OnnxExportError("ONNX export failed: " + " | ".join(errors))


def export_onnx(module: nn.Module, inputs: Sequence[torch.Tensor], path: str | os.PathLike[str],
                input_names: Sequence[str], output_names: Sequence[str], metadata: Mapping[str, Any],
                opset: int = MIN_OPSET, exporter: Exporter = "auto", external_data: bool | None = None,
                dynamic_batch: bool = False) -> Path:
    """Export ``module(*inputs)`` to ``path``, attach ``metadata``, save (external data if large), check.

    Returns the path. The model passes ``onnx.checker.check_model`` (full check) or an
    :class:`OnnxExportError` is raised.
    """
    import onnx

    if opset < MIN_OPSET:
        raise OnnxExportError(f"opset {opset} is too old; fuxiops exports with opset >= {MIN_OPSET}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise OnnxExportError(f"ONNX output {path} must end in .onnx (the model loader keys on it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            used = _export_raw(module, tuple(inputs), raw, input_names, output_names, opset, exporter,
                               dynamic_batch)
        model = onnx.load(str(raw), load_external_data=True)
    meta = {**dict(metadata), "exporter": used, "opset": opset, "torch": torch.__version__}
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    model.producer_name = "fuxiops"
    weights = sum(int(np.prod(t.dims)) * 4 for t in model.graph.initializer)
    use_external = weights > EXTERNAL_DATA_THRESHOLD if external_data is None else external_data
    data_name = path.name + ".data"
    for stale in (path, path.with_name(data_name)):
        if stale.exists():
            stale.unlink()
    if use_external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise OnnxExportError(f"exported model {path} fails onnx.checker: {e}") from e
    sidecar_path(path).write_text(json.dumps(meta, indent=1))
    log.info("exported ONNX model", extra={"fields": {"path": str(path), "exporter": used, "opset": opset,
                                                      "external_data": use_external}})
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``fuxiops`` metadata of an exported model (from metadata_props, else the sidecar JSON)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FuxiopsError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise FuxiopsError(f"{path} is not a readable ONNX model: {e}") from None
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return dict(json.loads(prop.value))
    side = sidecar_path(path)
    if side.is_file():
        return dict(json.loads(side.read_text()))
    raise FuxiopsError(f"ONNX model {path} has no fuxiops metadata (metadata_props[{METADATA_KEY!r}] or "
                       f"{side.name}); export it with `fuxiops compress export`")


#: Ops kept in fp32 inside the fp16 network body (statistics, exponentials, resampling lose too much).
FP16_OP_BLOCK_LIST = ("LayerNormalization", "GroupNormalization", "InstanceNormalization", "ReduceMean",
                      "ReduceSumSquare", "Pow", "Sqrt", "Exp", "Softmax", "Resize")
#: The module attribute of the exported model that holds the normalised network (``ForecastModule.net``).
BODY_SCOPE = "net"


def _node_scopes(node: Any) -> list[str]:
    """The torch module path of an exported node: from the dynamo exporter's name-scope metadata, else
    from the legacy exporter's ``/a/b/Op`` node names."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                return [str(v) for v in ast.literal_eval(prop.value)]
            except (ValueError, SyntaxError):
                break
    if node.name.startswith("/"):
        return ["", *node.name.strip("/").split("/")[:-1]]
    return []


def split_body(graph: Any, scope: str = BODY_SCOPE) -> tuple[set[int], list[str], list[str]]:
    """Partition an exported forecaster graph into the normalised network body and the physical rest.

    Returns the indices of the body nodes (those that must leave the graph: the constant-only helpers
    among them stay in the rest too), the tensors entering it (normalised inputs and condition
    planes) and the tensors leaving it (the normalised output). Body: every node exported from module
    ``scope`` and every node computed from constants only that feeds it. The rest (input normalisation,
    condition planes, the residual de-normalisation) works on physical units and stays fp32.
    """
    nodes = list(graph.node)
    consts = {t.name for t in graph.initializer} | {""}
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    # Nodes that depend on a graph input (forward closure), in graph order (the exporters emit topologically).
    live = {i.name for i in graph.input}
    dynamic: set[int] = set()
    for i, n in enumerate(nodes):
        if any(t in live for t in n.input):
            dynamic.add(i)
            live.update(n.output)
    in_scope = {i for i, n in enumerate(nodes) if len(_node_scopes(n)) > 1 and _node_scopes(n)[1] == scope}
    if not in_scope & dynamic:
        raise OnnxExportError(f"no node of module {scope!r} found in the graph; fp16 conversion needs a model "
                              "exported by fuxiops (ForecastModule with its .net body)")
    core = {i for i in dynamic if i in in_scope}
    # Constant-only helpers (shapes, folded weights) the body needs are copied into it; the physical
    # rest keeps its own copies, so no constant ever crosses the fp16 boundary.
    body = set(core)
    stack = [producer[t] for i in core for t in nodes[i].input if t in producer]
    while stack:
        j = stack.pop()
        if j in body or j in dynamic:
            continue
        body.add(j)
        stack.extend(producer[t] for t in nodes[j].input if t in producer)
    produced_in_body = {o for i in body for o in nodes[i].output}
    inputs = sorted({t for i in body for t in nodes[i].input
                     if t not in produced_in_body and t not in consts and t in live})
    outside_uses = {t for i, n in enumerate(nodes) if i not in core for t in n.input}
    graph_out = {g.name for g in graph.output}
    outputs = sorted({o for i in core for o in nodes[i].output if o in outside_uses or o in graph_out})
    return body, inputs, outputs


def _fp16_model(src: str | os.PathLike[str]) -> Any:
    """Convert the normalised network body to fp16; normalisation and physical-unit arithmetic stay fp32.

    The graph takes physical units (MSL ~1e5 Pa exceeds the fp16 maximum 65504; geopotential ~5e4 loses
    its precision), so converting the whole graph overflows. The body (``ForecastModule.net``, fed with
    ``(x - mean) / std`` and O(1) condition planes, returning normalised tendencies) is cut out, converted
    on its own with fp32 inputs/outputs (Casts at its boundary) and spliced back between the fp32
    prologue (input normalisation, condition planes) and epilogue (``x_last + y * res_std + res_mean``).
    """
    import onnx
    from onnx import helper, shape_inference
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src), load_external_data=True)
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node
           for a in n.attribute):
        raise OnnxExportError("fp16 conversion does not handle control-flow subgraphs")
    body_idx, b_in, b_out = split_body(graph)
    try:
        inferred = shape_inference.infer_shapes(model).graph
    except Exception:  # shapes only help the converter; types are what matter
        inferred = graph
    vi = {v.name: v for v in [*inferred.value_info, *inferred.input, *inferred.output]}

    def info(name: str) -> Any:
        if name in vi:
            v = onnx.ValueInfoProto()
            v.CopyFrom(vi[name])
            return v
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)

    nodes = list(graph.node)
    live_tensors = _dynamic_tensors(graph)
    body_nodes = []
    for i in sorted(body_idx):
        copy = onnx.NodeProto()
        copy.CopyFrom(nodes[i])
        body_nodes.append(copy)
    used = {t for n in body_nodes for t in n.input}
    body_init = [t for t in graph.initializer if t.name in used]
    body = helper.make_graph(body_nodes, "body", [info(n) for n in b_in], [info(n) for n in b_out], body_init)
    body_model = helper.make_model(body, opset_imports=list(model.opset_import))
    body_model.ir_version = model.ir_version
    half = convert_float_to_float16(body_model, keep_io_types=True, op_block_list=list(FP16_OP_BLOCK_LIST))
    # Splice: rename every tensor and node of the converted body except its boundary, then replace.
    keep = set(b_in) | set(b_out)

    def ren(t: str) -> str:
        return t if (not t or t in keep) else f"fp16/{t}"

    hg = half.graph
    for n in hg.node:
        n.name = f"fp16/{n.name}"
        n.input[:] = [ren(t) for t in n.input]
        n.output[:] = [ren(t) for t in n.output]
    for t in hg.initializer:
        t.name = ren(t.name)
    moved = {i for i in body_idx if any(t in live_tensors for t in nodes[i].input)}
    rest = _prune_unused([n for i, n in enumerate(nodes) if i not in moved], {o.name for o in graph.output}
                         | {t for n in hg.node for t in n.input})
    rest_used = {t for n in rest for t in n.input}
    rest_init = [t for t in graph.initializer if t.name in rest_used]
    del graph.node[:]
    graph.node.extend([*rest, *hg.node])
    del graph.initializer[:]
    graph.initializer.extend([*rest_init, *hg.initializer])
    del graph.value_info[:]
    _toposort(graph)
    return model


def _dynamic_tensors(graph: Any) -> set[str]:
    """Tensors computed from the graph inputs (the rest derive from constants only)."""
    live = {i.name for i in graph.input}
    for n in graph.node:  # exported graphs are in topological order
        if any(t in live for t in n.input):
            live.update(n.output)
    return live


def _prune_unused(nodes: list[Any], needed: set[str]) -> list[Any]:
    """Drop nodes none of whose outputs is needed (by ``needed`` or by a kept node), iteratively."""
    keep = list(nodes)
    while True:
        used = needed | {t for n in keep for t in n.input}
        kept = [n for n in keep if any(o in used for o in n.output)]
        if len(kept) == len(keep):
            return kept
        keep = kept


def _toposort(graph: Any) -> None:
    """Reorder nodes so every input is produced before use (the fp16 converter appends input casts last)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes = list(graph.node)
    ordered = []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in available for i in n.input):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):  # a cycle or a dangling input: leave the rest as it was
            ordered.extend(rest)
            break
        nodes = rest
    del graph.node[:]
    graph.node.extend(ordered)


def to_fp16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """A float16 copy of a model for GPU serving; inputs and outputs stay float32 (keep_io_types)."""
    import onnx

    dst = Path(dst)
    onnx.save_model(_fp16_model(src), str(dst))
    return dst


def to_fp16_bytes(src: str | os.PathLike[str]) -> bytes:
    """The float16 conversion of ``src`` as serialised bytes (for an in-memory session, < 2 GiB)."""
    return bytes(_fp16_model(src).SerializeToString())


def max_abs_diff(module: nn.Module, path: str | os.PathLike[str], inputs: Sequence[torch.Tensor],
                 input_names: Sequence[str], scale: np.ndarray | None = None) -> float:
    """Max |torch - ONNX Runtime (CPU)| over the first output, divided by ``scale`` per channel if given."""
    import onnxruntime as ort

    with torch.no_grad():
        ref = module.eval()(*inputs)
    ref_np = (ref[0] if isinstance(ref, (tuple, list)) else ref).detach().cpu().numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: t.detach().cpu().numpy() for n, t in zip(input_names, inputs)}
    got = sess.run(None, feeds)[0]
    diff = np.abs(got.astype(np.float64) - ref_np.astype(np.float64))
    if scale is not None:
        diff = diff / np.asarray(scale, dtype=np.float64).reshape(-1, 1, 1)
    return float(diff.max())
