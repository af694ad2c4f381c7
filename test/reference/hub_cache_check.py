"""Python side of the hub cache cross-check in test/hub.test.ts (huggingface_hub, pip).

HF_HOME and HF_ENDPOINT (the test's stand-in hub) come from the environment.

  hub_cache_check.py download REPO_ID FILE...   hf_hub_download each file (a missing one: EntryNotFound is
                                                expected and leaves a .no_exist marker, as transformers does)
  hub_cache_check.py snapshot REPO_ID FILE...   snapshot_download(allow_patterns=FILES)
  hub_cache_check.py offline  REPO_ID FILE...   with HF_HUB_OFFLINE=1: hf_hub_download of each cached file,
                                                try_to_load_from_cache of each, snapshot_download

Prints one JSON line: {"snapshot": dir, "files": {name: sha256 or null for "known not to exist"}}; offline
also gives what scan_cache_dir (`hf cache scan`) finds: "scan" [[repo, commit, refs, files]], "scan_warnings".
"""
import hashlib
import json
import os
import sys

import huggingface_hub as hh
from huggingface_hub.errors import EntryNotFoundError


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    mode, repo_id, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    out = {"version": hh.__version__, "files": {}}
    if mode == "download":
        for f in files:
            try:
                p = hh.hf_hub_download(repo_id, f)
                out["files"][f] = sha256(p)
                out["snapshot"] = os.path.dirname(p) if "/" not in f else out.get("snapshot")
            except EntryNotFoundError:
                out["files"][f] = None
    elif mode == "snapshot":
        out["snapshot"] = hh.snapshot_download(repo_id, allow_patterns=files)
        for f in files:
            p = os.path.join(out["snapshot"], f)
            out["files"][f] = sha256(p) if os.path.exists(p) else None
    elif mode == "offline":
        assert os.environ.get("HF_HUB_OFFLINE") == "1", "offline mode needs HF_HUB_OFFLINE=1"
        for f in files:
            cached = hh.try_to_load_from_cache(repo_id, f)
            if cached is None:
                raise SystemExit(f"{f}: not in the cache")
            if not isinstance(cached, str):  # _CACHED_NO_EXIST: a .no_exist marker
                out["files"][f] = None
                continue
            p = hh.hf_hub_download(repo_id, f)
            assert p == cached, (p, cached)
            out["files"][f] = sha256(p)
        present = [f for f, h in out["files"].items() if h is not None]
        out["snapshot"] = hh.snapshot_download(repo_id, allow_patterns=present)
        scan = hh.scan_cache_dir()  # what `hf cache scan` reports about the cache
        out["scan_warnings"] = [str(w) for w in scan.warnings]
        out["scan"] = sorted(
            (r.repo_id, rev.commit_hash, sorted(rev.refs), sorted(f.file_name for f in rev.files))
            for r in scan.repos
            for rev in r.revisions
        )
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
