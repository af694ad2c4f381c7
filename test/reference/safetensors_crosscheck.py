"""Cross-check of our safetensors reader/writer and F16 rounding against the reference implementation.

Used by test/safetensors.test.ts when `python3 -c "import safetensors, numpy"` works
(pip install safetensors numpy). Modes:
  write FILE      write tensors with safetensors.numpy.save_file; print {name: {dtype, shape, values}} as JSON
  read FILE       read FILE with safetensors.numpy.load_file (+ safe_open for metadata); print the same JSON
  f16 IN OUT      read float32 values (little-endian bytes) from IN, round them to float16 with numpy
                  (round to nearest even), write the raw float16 bits to OUT
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

NAMES = {np.dtype('float64'): 'F64', np.dtype('float32'): 'F32', np.dtype('float16'): 'F16',
         np.dtype('int64'): 'I64', np.dtype('int32'): 'I32', np.dtype('int16'): 'I16',
         np.dtype('int8'): 'I8', np.dtype('uint8'): 'U8', np.dtype('bool'): 'BOOL'}


def describe(tensors, metadata):
    out = {'__metadata__': metadata or {}}
    for name, a in tensors.items():
        values = a.reshape(-1)
        if a.dtype.kind == 'f':
            values = [float(v) for v in values.astype(np.float64)]
        elif a.dtype.kind == 'b':
            values = [1 if v else 0 for v in values]
        else:
            values = [int(v) for v in values]
        out[name] = {'dtype': NAMES[a.dtype], 'shape': list(a.shape), 'values': values}
    return out


def main():
    mode = sys.argv[1]
    if mode == 'write':
        rng = np.random.default_rng(0)
        tensors = {
            'a.f32': rng.standard_normal((3, 5)).astype(np.float32),
            'b.f16': (rng.standard_normal((4, 2)) * 100).astype(np.float16),
            'c.f64': rng.standard_normal((7,)),
            'd.i64': rng.integers(-2**40, 2**40, size=(2, 3), dtype=np.int64),
            'e.i32': rng.integers(-2**31, 2**31 - 1, size=(5,), dtype=np.int32),
            'f.i16': rng.integers(-2**15, 2**15 - 1, size=(3,), dtype=np.int16),
            'g.i8': rng.integers(-128, 127, size=(4,), dtype=np.int8),
            'h.u8': rng.integers(0, 255, size=(2, 2), dtype=np.uint8),
            'i.bool': np.array([True, False, True]),
            'j.scalar': np.array(3.5, dtype=np.float32),
            'k.empty': np.zeros((0, 4), dtype=np.float32),
        }
        metadata = {'format': 'pt', 'note': 'written by safetensors.numpy'}
        save_file(tensors, sys.argv[2], metadata=metadata)
        print(json.dumps(describe(tensors, metadata)))
    elif mode == 'read':
        tensors = load_file(sys.argv[2])
        with safe_open(sys.argv[2], framework='np') as f:
            metadata = f.metadata()
        print(json.dumps(describe(tensors, metadata)))
    elif mode == 'f16':
        values = np.fromfile(sys.argv[2], dtype='<f4')
        values.astype('<f2').tofile(sys.argv[3])
    else:
        raise SystemExit(f'unknown mode {mode}')


if __name__ == '__main__':
    main()
