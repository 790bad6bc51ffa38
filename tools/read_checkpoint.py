#!/usr/bin/env python3
"""Reads the tensors of a Tessera PyTorch checkpoint for `tessera import`, without PyTorch.

Usage: read_checkpoint.py CKPT OUTDIR [--skip-prefix P]... [--trust-pickle]

Two phases, driven by tessera over stdin/stdout:
 1. Reads the pickle's metadata only (no storage bytes) and writes OUTDIR/index.json:
      {"layout": "model_state" | "model_state_dict" | "model" | "unknown",
       "top_level": [top-level keys of the file],
       "args": {name: text} (v2's payload["args"], else {}),
       "tensors": [{"key": KEY, "shape": [...], "dtype": "float32", "file": "tNNNNN.npy"}, ...],
       "skipped": [keys not read]}
    then prints "index". Keys whose name, with every "_orig_mod." removed, starts with a
    --skip-prefix (v1.x only) are listed in "skipped" and never read (the projection heads).
 2. When stdin then says "dump", writes each listed tensor as a float32 .npy and prints "done";
    on anything else (tessera found a bad key or shape) it exits without writing a value.
The choice of layout and every check of keys and shapes is tessera's (checkpoint_import.h);
this script refuses what cannot be a weight: dtypes other than float16/bfloat16/float32/float64,
NaN and infinite values, views reaching past their storage, non-string keys.

Security boundary: the file is a zip archive (torch.save since PyTorch 1.6) whose data.pkl is
unpickled by AllowListUnpickler. INVARIANT: no global outside the allow-list is ever resolved;
each allowed name maps to a stand-in defined in this file, so nothing the file names is imported
or called. Tensor storages are read as raw little- or big-endian bytes with numpy.
--trust-pickle instead loads the file with torch.load (full unpickling: runs code the file
names; only for files you trust). Needs numpy; PyTorch only for --trust-pickle.
Exit status: 0 done; 2 error (one line on stderr); 3 numpy (or torch for --trust-pickle) missing.
"""

import argparse
import io
import json
import os
import pickle
import re
import signal
import sys
import zipfile

TRUST_HINT = "--trust-pickle loads it with PyTorch (runs code from the file)"
MAX_PICKLE_BYTES = 256 << 20  # data.pkl holds metadata only; a larger one is not a checkpoint

# Storage classes torch.save names, and the numpy dtype of their bytes ("bfloat16": uint16 bits).
FLOAT_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64",
                  "HalfStorage": "float16", "BFloat16Storage": "bfloat16"}
# Resolved only so that a tensor of these can be refused by its dtype.
OTHER_STORAGES = {"LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
                  "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                  "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
                  "QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32"}
ITEM_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


class Refusal(Exception):
    """A one-line reason the file cannot be imported (the checkpoint path is prefixed)."""


def fail(message, status=2):
    sys.stderr.write(message + "\n")
    sys.exit(status)


# ---- stand-ins for the allowed globals ------------------------------------------------------

class StorageType:
    __slots__ = ("name", "dtype")  # no __dict__: a pickle's BUILD cannot change a stand-in

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class StorageRef:
    """A storage of the archive: data/<key>, `numel` elements of `dtype`; bytes not read."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class TensorRef:
    """A tensor as the pickle describes it: a strided view of a StorageRef."""

    __slots__ = ("storage", "offset", "shape", "stride", "dtype")

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride
        self.dtype = storage.dtype

    def extent(self):
        """Elements of the storage the view spans (offset included); 0 for an empty view."""
        if any(n == 0 for n in self.shape):
            return 0
        return self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def rebuild_tensor(storage, offset, size, stride, *_ignored):
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks...)."""
    ok = (isinstance(storage, StorageRef) and is_int(offset) and offset >= 0 and
          isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) and
          all(is_int(n) and n >= 0 for n in size + stride))
    if not ok:
        raise Refusal("holds a malformed tensor record")
    return TensorRef(storage, offset, size, stride)


def rebuild_parameter(data, *_ignored):
    """torch._utils._rebuild_parameter(data, requires_grad, hooks): the tensor itself."""
    return data


class PlainDict(dict):
    """collections.OrderedDict; the attributes torch adds (_metadata) are dropped."""

    def __setstate__(self, state):
        pass


class NamespaceDict(dict):
    """argparse.Namespace as a plain dict of its attributes; no Namespace is constructed."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise Refusal("holds a malformed argparse.Namespace")
        self.update(state)


class NumpyDtype:
    """numpy.dtype(code, align, copy) with its pickled state: only plain numeric codes."""

    def __init__(self, code, *_ignored):
        if not isinstance(code, str) or not re.fullmatch(r"[fiub][1248]", code):
            raise Refusal(f"holds a numpy scalar of dtype {code!r}")
        self.code, self.order = code, "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]


def numpy_scalar(dtype, data):
    """numpy.core.multiarray.scalar(dtype, bytes), built here from the code and the bytes."""
    import numpy as np

    if not isinstance(dtype, NumpyDtype) or not isinstance(data, bytes):
        raise Refusal("holds a malformed numpy scalar")
    kind = np.dtype(dtype.order.replace("|", "=") + dtype.code)
    if len(data) != kind.itemsize:
        raise Refusal("holds a malformed numpy scalar")
    return np.frombuffer(data, dtype=kind, count=1)[0].item()


def latin1_bytes(text, encoding):
    """_codecs.encode(text, "latin1"): how protocol 2 pickles bytes (numpy scalars' data)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise Refusal("holds a call of _codecs.encode other than latin1 bytes")
    return text.encode("latin1")


ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("collections", "OrderedDict"): PlainDict,
    ("argparse", "Namespace"): NamespaceDict,
    ("numpy", "dtype"): NumpyDtype,
    ("numpy.core.multiarray", "scalar"): numpy_scalar,
    ("numpy._core.multiarray", "scalar"): numpy_scalar,
    ("_codecs", "encode"): latin1_bytes,
}
for _name, _dtype in {**FLOAT_STORAGES, **OTHER_STORAGES}.items():
    ALLOWED[("torch", _name)] = StorageType(_name, _dtype)


class AllowListUnpickler(pickle.Unpickler):
    # INVARIANT: no global outside the allow-list is ever resolved. find_class is the only way
    # a pickle reaches a global (GLOBAL, STACK_GLOBAL, INST, OBJ and EXT all call it); it
    # returns the stand-ins above and never imports or looks up the names it is given.
    def find_class(self, module, name):
        target = ALLOWED.get((module, name))
        if target is None:
            raise Refusal(f"holds an object of class {module}.{name}, beyond tensors and plain "
                          f"containers; {TRUST_HINT}")
        return target

    def persistent_load(self, pid):
        # ('storage', storage class, key, location, numel), as torch.save writes it.
        ok = (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and
              isinstance(pid[1], StorageType) and isinstance(pid[2], str) and
              re.fullmatch(r"[0-9A-Za-z_]+", pid[2]) and is_int(pid[4]) and pid[4] >= 0)
        if not ok:
            raise Refusal(f"holds a storage reference other than torch.save's ({pid!r:.80})")
        return StorageRef(pid[2], pid[1].dtype, pid[4])


# ---- the archive ----------------------------------------------------------------------------

class Archive:
    """A torch.save zip: <prefix>/data.pkl, <prefix>/data/<key>, <prefix>/byteorder."""

    def __init__(self, path):
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                head = f.read(2)
            if head[:1] == b"\x80":
                raise Refusal(f"is in PyTorch's legacy (non-zip) format, which this reader does "
                              f"not unpickle; {TRUST_HINT}")
            raise Refusal("is not a PyTorch checkpoint (not a zip archive)")
        self.zip = zipfile.ZipFile(path)
        pickles = [n for n in self.zip.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            raise Refusal("is not a PyTorch checkpoint (no single <name>/data.pkl in the archive)")
        self.prefix = pickles[0][:-len("data.pkl")]
        order = self.read_small("byteorder", b"little").strip()
        if order not in (b"little", b"big"):
            raise Refusal(f"has byteorder {order[:20]!r}, neither little nor big")
        self.order = "<" if order == b"little" else ">"

    def read_small(self, name, default):
        try:
            info = self.zip.getinfo(self.prefix + name)
        except KeyError:
            return default
        if info.file_size > MAX_PICKLE_BYTES:
            raise Refusal(f"has a {name} of {info.file_size} bytes, too large for metadata")
        return self.zip.read(info)

    def payload(self):
        data = self.read_small("data.pkl", None)
        return AllowListUnpickler(io.BytesIO(data)).load()

    def storage_info(self, storage):
        try:
            return self.zip.getinfo(f"{self.prefix}data/{storage.key}")
        except KeyError:
            raise Refusal(f"has no data/{storage.key} for one of its tensors") from None

    def check(self, key, tensor):
        """Refusals that need no storage byte: dtype, and a view past the end of its storage."""
        if tensor.dtype not in ITEM_BYTES:
            raise Refusal(f"tensor {key} has dtype {tensor.dtype}; tessera imports float16, "
                          "bfloat16, float32 and float64 tensors only")
        stored = self.storage_info(tensor.storage).file_size // ITEM_BYTES[tensor.dtype]
        if tensor.extent() > min(tensor.storage.numel, stored):
            raise Refusal(f"tensor {key} reaches past the end of its storage")

    def values(self, tensor):
        """The tensor's values as a numpy array of float16, float32 or float64 (check() first)."""
        import numpy as np

        bf16 = tensor.dtype == "bfloat16"
        code = {"float32": "f4", "float64": "f8", "float16": "f2", "bfloat16": "u2"}[tensor.dtype]
        kind = np.dtype(self.order + code)
        count = tensor.extent()
        flat = np.frombuffer(self.zip.read(self.storage_info(tensor.storage)), dtype=kind,
                             count=count)
        if not tensor.shape:  # a 0-d tensor (as_strided reads shape () as "keep the shape")
            view = flat[tensor.offset:].reshape(())
        else:
            view = np.lib.stride_tricks.as_strided(
                flat[tensor.offset:] if count else flat, shape=tensor.shape,
                strides=[s * kind.itemsize for s in tensor.stride], writeable=False)
        if bf16:  # bfloat16 is the high half of a float32
            return (view.astype(np.uint32) << 16).view(np.float32)
        return view


# ---- --trust-pickle: torch.load ---------------------------------------------------------------

class TorchTensor:
    """A torch.Tensor from torch.load, with TensorRef's dtype and shape."""

    def __init__(self, tensor):
        self.tensor, self.shape = tensor, tuple(tensor.shape)
        self.dtype = str(tensor.dtype).replace("torch.", "")


class TorchFile:
    def __init__(self, path):
        try:
            import torch
        except ImportError:
            fail(f"{sys.executable} cannot import torch: --trust-pickle loads the file "
                 "with PyTorch (Debian: apt install python3-torch; or --python PATH)", 3)
        self.torch, self.path = torch, path

    def payload(self):
        try:
            try:
                payload = self.torch.load(self.path, map_location="cpu", weights_only=False)
            except TypeError:  # PyTorch before 1.13 has no weights_only
                payload = self.torch.load(self.path, map_location="cpu")
        except Exception as error:  # torch raises many types for a bad file: one line for all
            text = str(error).strip().splitlines()
            raise Refusal(f"is not a readable PyTorch checkpoint "
                          f"({text[0] if text else type(error).__name__})") from None
        return wrap_torch(payload, self.torch)

    def check(self, key, tensor):
        if tensor.dtype not in ITEM_BYTES:
            raise Refusal(f"tensor {key} has dtype {tensor.dtype}; tessera imports float16, "
                          "bfloat16, float32 and float64 tensors only")

    def values(self, tensor):
        t = tensor.tensor.detach().cpu()
        return (t.float() if t.dtype == self.torch.bfloat16 else t).numpy()


def wrap_torch(value, torch):
    if isinstance(value, torch.Tensor):
        return TorchTensor(value)
    if isinstance(value, dict):
        return {k: wrap_torch(v, torch) for k, v in value.items()}
    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
        return dict(vars(value))
    return value


# ---- the state dict ---------------------------------------------------------------------------

def layout_of(payload):
    if not isinstance(payload, dict):
        return "unknown", None, {}
    if "model" in payload and "args" in payload:
        args = payload["args"]
        return "model", payload["model"], args if isinstance(args, dict) else {}
    for name in ("model_state", "model_state_dict"):
        if name in payload:
            return name, payload[name], {}
    return "unknown", None, {}


def arg_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_index(source, payload, skip_prefixes):
    """index.json's content, and the (key, tensor, file) triples phase 2 dumps."""
    layout, state, args = layout_of(payload)
    index = {"layout": layout, "args": {str(k): arg_text(v) for k, v in args.items()},
             "top_level": sorted(str(k) for k in payload) if isinstance(payload, dict) else [],
             "tensors": [], "skipped": []}
    if state is not None and not isinstance(state, dict):
        raise Refusal(f"{layout} is a {type(state).__name__}, not a state dict")
    dumps = []
    for number, (key, value) in enumerate((state or {}).items()):
        if not isinstance(key, str):
            raise Refusal(f"key {key!r:.80} is a {type(key).__name__}, not a string")
        bare = key.replace("_orig_mod.", "")
        if layout != "model" and any(bare.startswith(p) for p in skip_prefixes):
            index["skipped"].append(key)
            continue
        if not isinstance(value, (TensorRef, TorchTensor)):
            raise Refusal(f"key {key} is a {type(value).__name__}, not a tensor")
        source.check(key, value)
        name = f"t{number:05d}.npy"
        index["tensors"].append({"key": key, "shape": list(value.shape), "dtype": value.dtype,
                                 "file": name})
        dumps.append((key, value, name))
    return index, dumps


def as_float32(key, values):
    """`values` as a new C-ordered float32 array; NaN, infinities and overflow are refused."""
    import numpy as np

    if not np.isfinite(values).all():
        raise Refusal(f"tensor {key} holds " +
                      ("NaN" if np.isnan(values).any() else "an infinite value"))
    out = np.array(values, dtype=np.float32, order="C")  # a copy; keeps 0-d tensors 0-d
    if not np.isfinite(out).all():
        raise Refusal(f"tensor {key} holds a value beyond the float32 range")
    return out


def dump(source, dumps, outdir):
    import numpy as np

    for key, tensor, name in dumps:
        if isinstance(tensor, TensorRef):  # a saved weight never repeats values: memory <= file
            count = int(np.prod(tensor.shape, dtype=object))
            if count > tensor.storage.numel:
                raise Refusal(f"tensor {key} repeats values of its storage ({count} elements "
                              f"over {tensor.storage.numel}: a stride-0 view)")
        np.save(os.path.join(outdir, name), as_float32(key, source.values(tensor)))


def main():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C ends the reader without a traceback
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("outdir")
    parser.add_argument("--skip-prefix", action="append", default=[])
    parser.add_argument("--trust-pickle", action="store_true")
    options = parser.parse_args()
    try:
        import numpy  # noqa: F401
    except ImportError as error:
        fail(f"{sys.executable} cannot import {error.name}: tessera import needs Python with "
             "numpy (Debian: apt install python3-numpy; or --python PATH)", 3)
    path = options.checkpoint
    try:
        source = TorchFile(path) if options.trust_pickle else Archive(path)
        index, dumps = build_index(source, source.payload(), options.skip_prefix)
        with open(os.path.join(options.outdir, "index.json"), "w") as out:
            json.dump(index, out)
        print("index", flush=True)
        if sys.stdin.readline().strip() != "dump":
            return
        dump(source, dumps, options.outdir)
        print("done", flush=True)
    except Refusal as refusal:
        fail(f"{path}: {refusal}")
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
            IndexError, KeyError, AttributeError, RecursionError, MemoryError) as error:
        text = str(error).strip().splitlines()
        fail(f"{path}: not a readable PyTorch checkpoint "
             f"({type(error).__name__}: {text[0] if text else 'no detail'})")


if __name__ == "__main__":
    main()
