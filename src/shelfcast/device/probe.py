"""One store sync in a fresh interpreter, reporting its peak resident memory (VmHWM) and every byte it read from
S3: how the tests and the fault matrix show that a store reads nothing unbounded (store side: stdlib only here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys
from pathlib import Path
from shelfcast.contract.objects import ObjectStore, make_s3_client
from shelfcast.device.sync import StoreClient
url, bucket, access, secret, channel, folder, root = sys.argv[1:8]
objects = ObjectStore(make_s3_client(url, access, secret), bucket)
result = StoreClient(objects, channel, folder, trusted_root=Path(root).read_bytes()).sync()
status = Path("/proc/self/status").read_text()
peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
print(json.dumps({"status": result.status, "serving": result.serving, "message": result.message,
                  "bytes_received": result.bytes_received, "peak_rss_mb": round(peak_kb / 1024, 1)}))
"""


def sync_in_child(s3_url: str, bucket: str, keys: tuple[str, str], channel: str, folder: Path, root_file: Path,
                  timeout_s: float = 300) -> dict:
    """Run `StoreClient.sync()` once in a new process; returns status, serving, message, bytes_received and
    peak_rss_mb. Raises `RuntimeError` with the child's stderr when it crashed."""
    done = subprocess.run([sys.executable, "-c", CHILD, s3_url, bucket, *keys, channel, str(folder), str(root_file)],
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"store sync child failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
