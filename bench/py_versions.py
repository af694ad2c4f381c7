"""Prints the versions of Python and the reference packages in this environment, as one JSON line."""
import json
import platform


def versions():
    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "sklearn", "safetensors", "torch", "transformers"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except ImportError:
            out[name] = None
    try:
        import numpy
        cfg = numpy.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        out["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informative only
        pass
    return out


if __name__ == "__main__":
    print(json.dumps(versions()))
