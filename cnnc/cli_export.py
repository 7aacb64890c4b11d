"""`cnnc export` (to ONNX or a PyTorch module file) and `cnnc import` (an ONNX model to a spec).

onnx, onnxruntime and torch are extras: a command that needs one it cannot import says which
extra to install (a UsageError, exit 2). The weights come from a run folder or checkpoint
(`--weights RUN`), else PyTorch's default initialisation (seed 0), so an export always runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cnnc.compiler.files import UsageError, load_one, write_atomic, write_bytes_atomic


def require(module: str, extra: str):
    """Import an optional dependency, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"this command needs the `{module}` package: pip install 'cnnc[{extra}]'"
        ) from None


def spec_weights(checked, weights: str | None) -> tuple[dict, dict]:
    """(tensors by cnnc name, metadata) of `--weights`, or the default initialisation."""
    from cnnc.compiler import weights as initial_weights

    if weights is None:
        return initial_weights.initial(checked), {}
    from cnnc.runtime import checkpoint

    tensors, meta = checkpoint.load(weights)
    named = {**checkpoint.split(tensors, "param/"), **checkpoint.split(tensors, "buffer/")}
    named = initial_weights.verify(checked, named, str(checkpoint.resolve(weights)))
    return named, {key: meta[key] for key in ("normalization", "classes") if key in meta}


def _identity(channels: int) -> dict:
    return {"mean": [0.0] * channels, "std": [1.0] * channels}


def save_weights(path: str, checked, tensors: dict, meta: dict) -> None:
    """A cnnc checkpoint holding only weights (`param/…`, `buffer/…`): `cnnc eval --weights`,
    `cnnc export --weights` and the exported PyTorch module all read it."""
    from cnnc.compiler.weights import expected_shapes
    from cnnc.runtime import checkpoint

    buffers = {name for layer in checked.layers for name in
               (f"{layer.node.name}.{role}" for role in layer.buffers)}  # fmt: skip
    named = {
        ("buffer/" if name in buffers else "param/") + name: tensors[name]
        for name in expected_shapes(checked)
    }
    info = {
        "network": checked.graph.name,
        "spec_hash": checkpoint.spec_hash(checked.graph.source),
        # untrained weights were fitted to no normalisation: the identity one says so
        "normalization": meta.get("normalization") or _identity(checked.graph.input_shape[0]),
        "classes": list(meta.get("classes") or []),
    }
    try:
        checkpoint.save(path, named, info)
    except OSError as error:
        raise UsageError(f"{path}: cannot write it ({error.strerror or error})") from None


def _write_onnx(model, output: str, external: bool) -> None:
    """The model in one file, or with its tensors in `<output>.data` beside it; either way both
    land whole or not at all."""
    onnx = require("onnx", "onnx")
    target = Path(output)
    if not external:
        try:
            data = model.SerializeToString()
        except ValueError as error:  # protobuf's 2 GB limit
            raise UsageError(f"{output}: {error}; use --external-data") from None
        try:
            write_bytes_atomic(target, data)
        except OSError as error:
            raise UsageError(f"{output}: cannot write it ({error.strerror or error})") from None
        return
    data_name = target.name + ".data"
    try:
        with tempfile.TemporaryDirectory(dir=target.parent or ".", prefix=".cnnc-export") as tmp:
            onnx.save_model(
                model, os.path.join(tmp, target.name), save_as_external_data=True,
                all_tensors_to_one_file=True, location=data_name, size_threshold=1024,
            )  # fmt: skip
            if (Path(tmp) / data_name).exists():
                os.chmod(Path(tmp) / data_name, 0o644)
                os.replace(Path(tmp) / data_name, target.with_name(data_name))
            os.replace(Path(tmp) / target.name, target)
    except OSError as error:
        raise UsageError(f"{output}: cannot write it ({error.strerror or error})") from None


def cmd_export(args) -> int:
    checked = load_one(args.spec, args.input)
    tensors, meta = spec_weights(checked, args.weights)
    if args.to == "onnx":
        require("onnx", "onnx")
        from cnnc.compiler.onnx_export import to_onnx

        model = to_onnx(checked, tensors, meta, opset=args.opset)
        _write_onnx(model, args.output, args.external_data)
        print(
            f"{args.output}: {checked.graph.name}, ONNX opset {args.opset}, "
            f"{len(model.graph.node)} nodes, {checked.params:,} params"
            + (f" (tensors in {args.output}.data)" if args.external_data else "")
        )
        return 0
    from cnnc.compiler.torch_export import module_source

    weights_path = args.weights_out or str(Path(args.output).with_suffix(".safetensors"))
    write_atomic(args.output, module_source(checked, Path(weights_path).name, meta))
    save_weights(weights_path, checked, tensors, meta)
    print(f"{args.output}: class {checked.graph.name.title().replace('_', '')}; weights in "
          f"{weights_path}")  # fmt: skip
    return 0


def cmd_import(args) -> int:
    require("onnx", "onnx")
    from cnnc.compiler.onnx_import import import_file

    imported = import_file(args.model, args.name)
    write_atomic(args.output, imported.spec)
    figures = f"{imported.checked.params:,} params, {imported.checked.macs:,} MACs"
    print(f"{args.output}: {imported.checked.graph.name}, {figures}")
    if args.weights_out:
        save_weights(args.weights_out, imported.checked, imported.weights, imported.meta)
        print(f"{args.weights_out}: {len(imported.weights)} tensors")
    return 0


def add_commands(sub) -> None:
    from cnnc.compiler.files import shape_arg

    from .cli import positive_int

    export = sub.add_parser("export", help="write a spec as an ONNX model or a PyTorch module")
    export.add_argument("spec")
    export.add_argument("--to", choices=("onnx", "pytorch"), required=True)
    export.add_argument("-o", "--output", required=True, help="model.onnx or model.py")
    export.add_argument("--weights", help="a checkpoint or run folder (default: initial weights)")
    export.add_argument("--input", type=shape_arg, metavar="CxHxW", help="override the input size")
    export.add_argument("--opset", type=positive_int, default=18, help="ONNX opset (default 18)")
    export.add_argument(
        "--external-data", action="store_true", help="ONNX tensors in OUTPUT.data beside it"
    )
    export.add_argument(
        "--weights-out", help="pytorch: the safetensors file (default: OUTPUT with .safetensors)"
    )
    export.set_defaults(run=cmd_export)

    import_ = sub.add_parser("import", help="turn an ONNX model into a spec")
    import_.add_argument("model", help="model.onnx")
    import_.add_argument("-o", "--output", required=True, help="the .cnn file to write")
    import_.add_argument("--weights-out", help="also write its weights (safetensors)")
    import_.add_argument("--name", help="the network's name (default: from the model)")
    import_.set_defaults(run=cmd_import)
