"""codebox package installer.

It has no network. pip's proxy (PIP_PROXY) is a forwarder this script runs on the
container's loopback, which carries each connection to codebox over the Unix socket
CODEBOX_EGRESS_SOCKET in the staging directory; codebox connects only to the index's hosts.

It receives distribution names on its command line (validated by the host), never user
code or files. Wheels only: installing a wheel runs none of the package's code, so a
hostile package cannot act while the network is open. Each distribution goes into its own
prefix under STAGING/<name>; its site directory is moved to <name>/site, the one layout the
runner needs to know. One JSON line per distribution reports the outcome on stdout.

Bounded disk: a host that sets CODEBOX_INSTALL_WORK and CODEBOX_INSTALL_OUT has pip work in
the first, a tmpfs of the install limit (pip's downloads and temporary files go there too),
and a finished site directory is copied to CODEBOX_INSTALL_OUT/<name>/site, host disk, only
after measuring it against what is left of CODEBOX_INSTALL_MAX_BYTES. Without them (an older
host) everything happens in /opt/codebox-staging, as before.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

OUT = os.environ.get("CODEBOX_INSTALL_OUT")
STAGING = (OUT and os.environ.get("CODEBOX_INSTALL_WORK")) or "/opt/codebox-staging"
LOG_LINES = 15
# Host file systems allocate whole blocks, and an empty file still takes an inode: counting
# every file and directory as at least one block keeps a million empty files from passing
# as zero bytes.
BLOCK = 4096
NO_SPACE_MARKERS = ("No space left on device", "[Errno 28]")


def find_site_dir(prefix):
    # Debian's python puts --prefix installs in local/lib/python3.X/dist-packages, upstream
    # python in lib/python3.X/site-packages; take whichever pip made.
    for root, dirs, _files in os.walk(prefix):
        for name in dirs:
            if name in ("site-packages", "dist-packages"):
                return os.path.join(root, name)
        if root.count(os.sep) - prefix.count(os.sep) >= 4:
            dirs[:] = []
    return None


def footprint(path):
    """Bytes `path` would take once copied to the host, links counted, never followed."""
    total = BLOCK
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            size = os.lstat(os.path.join(root, name)).st_size
            total += max(BLOCK, -(-size // BLOCK) * BLOCK)
    return total


def pip_env():
    env = dict(os.environ)
    if OUT:
        # pip's downloads and unpacked wheels count against the same tmpfs as the result.
        tmp = os.path.join(STAGING, ".tmp")
        os.makedirs(tmp, exist_ok=True)
        env["TMPDIR"] = tmp
    return env


def install(dist, budget):
    """The outcome for `dist` and the bytes it took of the budget."""
    target = os.path.join(STAGING, dist)
    prefix = os.path.join(target, "prefix")
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--disable-pip-version-check", "--no-input", "--no-cache-dir",
        "--only-binary=:all:", "--no-warn-script-location",
        "--prefix", prefix, dist,
    ]
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=pip_env()
    )
    log = proc.stdout.decode("utf-8", "replace").splitlines()
    if proc.returncode != 0:
        text = "\n".join(log[-LOG_LINES:])
        shutil.rmtree(target, ignore_errors=True)
        disk_full = bool(OUT) and any(m in text for m in NO_SPACE_MARKERS)
        return {"distribution": dist, "ok": False, "log": text, "disk_full": disk_full}, 0
    site = os.path.join(target, "site")
    found = find_site_dir(prefix)
    if found is None:
        # pip was satisfied by what the image has: nothing to add to the path.
        os.makedirs(site, exist_ok=True)
    else:
        os.rename(found, site)
    shutil.rmtree(prefix, ignore_errors=True)
    tail = "\n".join(log[-3:])
    if not OUT:
        return {"distribution": dist, "ok": True, "log": tail}, 0
    size = footprint(site)
    if size > budget:
        shutil.rmtree(target, ignore_errors=True)
        return {"distribution": dist, "ok": False, "too_large": True, "bytes": size,
                "log": "installed %d bytes, more than the %d left to copy" % (size, budget)}, 0
    shutil.copytree(site, os.path.join(OUT, dist, "site"), symlinks=True)
    # The tmpfs is memory: free it for the next distribution.
    shutil.rmtree(target, ignore_errors=True)
    return {"distribution": dist, "ok": True, "bytes": size, "log": tail}, size


def pump(source, sink):
    """Copies one direction of a connection until it ends, then ends it at the other side."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def start_egress_forwarder():
    """Listens for pip on the loopback and hands each connection to codebox's socket."""
    path = os.environ.get("CODEBOX_EGRESS_SOCKET")
    port = int(os.environ.get("CODEBOX_EGRESS_PORT", "0") or "0")
    if not path or not port:
        return
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(32)

    def serve():
        while True:
            client, _ = listener.accept()
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(path)
            except OSError:
                client.close()
                upstream.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def main():
    start_egress_forwarder()
    budget = int(os.environ.get("CODEBOX_INSTALL_MAX_BYTES", "0") or "0")
    for dist in sys.argv[1:]:
        try:
            outcome, used = install(dist, budget)
            budget -= used
        except Exception as exc:  # report, never crash silently
            # A copy cut short may have left part of itself on the host: copy nothing more.
            budget = 0
            outcome = {"distribution": dist, "ok": False, "log": repr(exc)}
        # Tells the host this script kept to its limits: it refuses an older one's results.
        outcome["bounded"] = bool(OUT)
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
