"""Reading, checking and writing ONNX files with clean errors; the input spec of an image model.

External data: an ONNX file may keep its weights in other files beside it (``<name>.onnx.data``: what torch's
``torch.onnx.export(..., dynamo=True)`` writes for every model, and what any model over 2 GB needs). They are
resolved against the ONNX file's own folder, never the working directory: files are checked by path, loaded by
path, hashed together with their data (``model_sha256``), and written with their data (``save_onnx``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.core.errors import InputError, UsageError

# ONNX TensorProto element types deploykit can feed
_NP_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def load_onnx(path: str | Path, load_external_data: bool = True):
    """Load and structurally check an ONNX file; a missing, truncated or corrupt file is an InputError."""
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.exists():
        raise InputError(f"ONNX file not found: {p}")
    if not p.is_file():
        raise InputError(f"not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"ONNX file is empty: {p}")
    try:
        model = onnx.load(str(p), load_external_data=load_external_data)
    except DecodeError:
        raise InputError(f"{p} is not a valid ONNX file (corrupt or truncated protobuf)") from None
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if exc.filename else exc
        raise InputError(f"{p}: external data file missing ({missing})") from None
    except RecursionError:
        raise InputError(f"{p} is not a valid ONNX file (nested too deeply)") from None
    except Exception as exc:  # onnx raises a variety of errors on garbage input
        raise InputError(f"{p} is not a valid ONNX file ({_first_line(exc)})") from None
    if not model.graph.node and not model.graph.output:
        raise InputError(f"{p} is not a valid ONNX file (empty graph)")
    check_model(model, p, path=p)
    return model


def load_onnx_with_data(path: str | Path):
    """(model with its weights loaded, the external data files it keeps them in): for a rewrite that writes the
    result the same way (``save_onnx(..., external=bool(files))``)."""
    from onnx.external_data_helper import load_external_data_for_model

    p = Path(path)
    model = load_onnx(p, load_external_data=False)
    files = external_data_files(model)
    if files:
        try:
            load_external_data_for_model(model, str(p.parent))
        except Exception as exc:
            raise InputError(f"{p}: cannot read its external data ({_first_line(exc)})") from None
    return model, files


# the checker and ONNX Runtime refuse protobuf messages from 2 GiB on; a graph this big is written with its
# weights as external data
PROTOBUF_LIMIT = 2_000_000_000


def check_model(model, where: str | Path = "model", *, path: str | Path | None = None) -> None:
    """Run the ONNX checker on ``model``; by ``path`` (resolving external data against the file's folder) when the
    model keeps weights in external files or is too big for an in-memory check."""
    import onnx

    try:
        if path is not None and (uses_external_data(model) or model.ByteSize() >= PROTOBUF_LIMIT):
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(model)
    except Exception as exc:
        raise InputError(f"{where} fails the ONNX checker: {_first_line(exc)}") from None


def _tensors(model):
    """Every TensorProto of ``model``: initializers and tensor attributes, subgraphs included."""
    stack = [model.graph]
    while stack:
        g = stack.pop()
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("g"):
                    stack.append(a.g)
                stack.extend(a.graphs)


def external_data_files(model) -> list[str]:
    """The external data files ``model`` refers to (locations relative to its file's folder), sorted."""
    from onnx import TensorProto

    found = set()
    for t in _tensors(model):
        if t.data_location == TensorProto.EXTERNAL:
            for kv in t.external_data:
                if kv.key == "location":
                    found.add(kv.value)
    return sorted(found)


def uses_external_data(model) -> bool:
    from onnx import TensorProto

    return any(t.data_location == TensorProto.EXTERNAL for t in _tensors(model))


def model_sha256(path: str | Path, external: list[str] | None = None) -> str:
    """SHA-256 of an ONNX model's content: the file's bytes, followed by each external data file (name and bytes)
    it refers to -- so weights changed in ``model.onnx.data`` change the identity. For a file without external
    data this is the file's own SHA-256. ``external``: the locations, when already known (else the graph is
    read to find them)."""
    import hashlib

    from deploykit.core.hashing import file_sha256

    p = Path(path)
    if external is None:
        import onnx

        try:
            external = external_data_files(onnx.load(str(p), load_external_data=False))
        except Exception:  # unreadable: its bytes are all there is to hash
            external = []
    if not external:
        return file_sha256(p)
    h = hashlib.sha256(bytes.fromhex(file_sha256(p)))
    for loc in external:
        data = p.parent / loc
        h.update(b"\0" + loc.encode() + b"\0")
        h.update(bytes.fromhex(file_sha256(data)) if data.is_file() else b"missing")
    return h.hexdigest()


def save_onnx(model, dest: str | Path, *, external: bool | None = None) -> list[str]:
    """Write ``model`` (with its weights loaded) to ``dest`` atomically; with ``external`` (default: when it is too
    big for one protobuf message) the weights go to ``<dest name>.data`` beside it, written first. Returns the
    external data files written (names relative to ``dest``'s folder). A full disk is a one-line error."""
    import copy
    import os

    import onnx

    from deploykit.core.atomic import atomic_path, run_dir, write_error

    dest = Path(dest)
    if external is None:
        external = model.ByteSize() >= PROTOBUF_LIMIT
    if not external:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(model.SerializeToString())
        return []
    data_name = dest.name + ".data"
    model = copy.deepcopy(model)  # saving with external data moves the weights out of the message
    with run_dir(dest.parent, "save") as work:
        try:
            onnx.save_model(model, str(work / dest.name), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=0, convert_attribute=False)
            if not (work / data_name).exists():  # no tensor was big enough to move out
                return save_onnx(onnx.load(str(work / dest.name)), dest, external=False)
            os.replace(work / data_name, dest.with_name(data_name))  # the data first, the graph that names it last
            os.replace(work / dest.name, dest)
        except OSError as exc:
            raise write_error(dest, exc) from None
    return [data_name]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("Traceback"):
            return line[:300]
    return type(exc).__name__


@dataclass(frozen=True)
class InputSpec:
    name: str
    dims: tuple  # ints for static dims, strings (or None) for symbolic ones
    dtype: str


def input_specs(model) -> list[InputSpec]:
    init_names = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        out.append(InputSpec(vi.name, dims, _NP_DTYPES.get(tt.elem_type, f"onnx-type-{tt.elem_type}")))
    return out


def output_names(model) -> list[str]:
    return [o.name for o in model.graph.output]


def image_input_shape(model, batch: int | None, resolution: int | None,
                      where: str = "model") -> tuple[str, tuple[int, ...], str]:
    """The single NCHW image input of ``model``, with symbolic dims filled from batch/resolution.

    Raises a clean error for non-image inputs and for batch/resolution that contradict static dims.
    """
    return image_input_from_specs(input_specs(model), batch, resolution, where)


def image_input_from_specs(specs: list[InputSpec], batch: int | None, resolution: int | None,
                           where: str = "model") -> tuple[str, tuple[int, ...], str]:
    """``image_input_shape`` for inputs already read (from ONNX, or from a runtime-native file such as IR)."""
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs) or "none"
        raise InputError(f"{where} has {len(specs)} inputs ({names}); deploykit measures single-input image models")
    spec = specs[0]
    if spec.dtype not in ("float32", "float16"):
        raise InputError(f"{where}: input {spec.name!r} is {spec.dtype}; deploykit feeds float image tensors")
    if len(spec.dims) != 4:
        raise InputError(
            f"{where}: input {spec.name!r} has shape {_fmt(spec.dims)}; deploykit measures image models "
            "with one N x C x H x W input"
        )
    if any(isinstance(d, int) and d <= 0 for d in spec.dims):
        raise InputError(f"{where}: input {spec.name!r} has shape {_fmt(spec.dims)} with a zero dimension; no image "
                         "fits it")
    n, c, h, w = spec.dims
    if not isinstance(c, int) or c not in (1, 3, 4):
        raise InputError(f"{where}: input {spec.name!r} has shape {_fmt(spec.dims)}; "
                         "expected 1, 3 or 4 channels in dim 1 (NCHW)")
    shape = [n, c, h, w]
    if isinstance(n, int) and n > 0:
        if batch is not None and batch != n:
            raise UsageError(f"{where} has a fixed batch of {n}; --batch {batch} does not fit "
                             f"(export with --dynamic-batch or --batch {batch})")
    else:
        shape[0] = batch or 1
    for i, name in ((2, "height"), (3, "width")):
        d = shape[i]
        if isinstance(d, int) and d > 0:
            if resolution is not None and resolution != d:
                raise UsageError(f"{where} has a fixed {name} of {d}; --resolution {resolution} does not fit "
                                 f"(export at --resolution {resolution})")
        else:
            if resolution is None:
                raise UsageError(f"{where} has a dynamic {name}; give --resolution")
            shape[i] = resolution
    return spec.name, tuple(int(s) for s in shape), spec.dtype


def _fmt(dims) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in dims) + "]"


def opset_of(model) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise InputError("ONNX model has no default-domain opset")


def op_label(node) -> str:
    """How deploykit names an op: the op type, prefixed with its domain outside the default domain
    (``com.microsoft.QLinearSoftmax``, ``com.microsoft.nchwc.Conv``)."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def op_histogram(model_or_graph) -> dict[str, int]:
    """Node count per op (see ``op_label``), most frequent first (ties by name)."""
    from collections import Counter

    graph = getattr(model_or_graph, "graph", model_or_graph)
    hist = Counter(op_label(n) for n in graph.node)
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger",
              "DynamicQuantizeLinear", "QLinearSoftmax"}


def graph_precision(model) -> str:
    """The arithmetic precision a graph asks for: int8 when it carries quantisation ops, else the float type
    of most of its weights (fp32 / fp16 / bf16)."""
    if any(n.op_type in _QUANT_OPS for n in model.graph.node):
        return "int8"
    counts: dict[int, int] = {}
    for init in model.graph.initializer:
        counts[init.data_type] = counts.get(init.data_type, 0) + 1
    dominant = max((t for t in counts if t in (1, 10, 16)), key=lambda t: counts[t], default=1)
    return {1: "fp32", 10: "fp16", 16: "bf16"}[dominant]


def op_types(model) -> set[str]:
    """Every op type in ``model``: main graph, subgraphs (If/Loop/Scan bodies) and local functions. Ops outside
    the default domain are named ``domain.Op``."""
    found: set[str] = set()

    def walk(nodes):
        for n in nodes:
            found.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}")
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    walk(a.g.node)
                for g in a.graphs:
                    walk(g.node)

    walk(model.graph.node)
    for f in model.functions:
        walk(f.node)
    return found


# where an exporter records how images become the model's input (deploykit's own exports write it; a user's file
# may carry it too): JSON with mean, std, crop_pct, interpolation, channel_order, value_range
PREPROCESS_KEY = "deploykit.preprocess"


def set_metadata(proto, key: str, value: str) -> None:
    """Set ``key`` in the model's metadata_props (replacing an earlier value)."""
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value


def get_metadata(proto, key: str) -> str | None:
    return next((p.value for p in proto.metadata_props if p.key == key), None)
