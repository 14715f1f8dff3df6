"""codebox package installer: the only container that has a network.

It receives distribution names on its command line (validated by the host), never user
code or files. Wheels only: installing a wheel runs none of the package's code, so a
hostile package cannot act while the network is open. Each distribution goes into its own
prefix under /opt/codebox-staging/<name>; its site directory is moved to
/opt/codebox-staging/<name>/site, the one layout the runner needs to know. One JSON line per
distribution reports the outcome on stdout.
"""

import json
import os
import shutil
import subprocess
import sys

STAGING = "/opt/codebox-staging"
LOG_LINES = 15


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


def install(dist):
    target = os.path.join(STAGING, dist)
    prefix = os.path.join(target, "prefix")
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--disable-pip-version-check", "--no-input", "--no-cache-dir",
        "--only-binary=:all:", "--no-warn-script-location",
        "--prefix", prefix, dist,
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = proc.stdout.decode("utf-8", "replace").splitlines()
    if proc.returncode != 0:
        return {"distribution": dist, "ok": False, "log": "\n".join(log[-LOG_LINES:])}
    site = os.path.join(target, "site")
    found = find_site_dir(prefix)
    if found is None:
        # pip was satisfied by what the image has: nothing to add to the path.
        os.makedirs(site, exist_ok=True)
    else:
        os.rename(found, site)
    shutil.rmtree(prefix, ignore_errors=True)
    return {"distribution": dist, "ok": True, "log": "\n".join(log[-3:])}


def main():
    for dist in sys.argv[1:]:
        try:
            outcome = install(dist)
        except Exception as exc:  # report, never crash silently
            outcome = {"distribution": dist, "ok": False, "log": repr(exc)}
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
