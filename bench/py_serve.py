"""The request loop of the reference scripts: one JSON request per stdin line, one JSON reply per stdout
line. The first line printed is {"ready": true, "versions": {...}} (or {"error": ...} when a package is
missing), so the benchmark driver (bench/common.ts PyServer) knows what it runs against."""
import json
import sys
import traceback

from py_versions import versions


def serve(handlers, setup=None):
    try:
        if setup is not None:
            setup()
    except Exception as e:  # noqa: BLE001 - reported to the driver
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return
    print(json.dumps({"ready": True, "versions": versions()}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            reply = handlers[req["cmd"]](req)
        except Exception as e:  # noqa: BLE001 - reported to the driver
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
