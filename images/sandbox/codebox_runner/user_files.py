"""The user's files where models look for them, besides load_file(id): /mnt/data/<name>
(ChatGPT's interpreter's place) and the bare file id in the working directory."""

import os

# What /mnt/data points to in the image: made here, root's, so the code can read the links
# in it and neither add, remove nor replace one.
DATA_LINKS = "/tmp/.codebox-data"
# Where the host stages the run's files; a link points nowhere else.
INPUT_ROOT = "/mnt/inputs/"
# The longest file name Linux takes, in bytes.
MAX_NAME_BYTES = 255


def plain_name(name):
    """Pure: whether `name` can be one directory entry as it is: no path, no NUL, no dots."""
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8", "replace")) <= MAX_NAME_BYTES
        and "/" not in name
        and "\0" not in name
        and name not in (".", "..")
    )


def expose_files(job, data_links=DATA_LINKS):
    """Links to the job's files: in `data_links` by their data names, and in the working
    directory by their ids. Links made by this process (root) in directories the code cannot
    change links in; the ones in the working directory are taken away again before outputs
    are collected, so they are never mistaken for outputs. Returns those."""
    made = []
    files = job.get("files") or []
    if not files:
        return made
    try:
        os.mkdir(data_links, 0o755)
    except OSError:
        return made
    workdir = job.get("workdir")
    for entry in files:
        target = entry.get("path") if isinstance(entry, dict) else None
        if not (isinstance(target, str) and target.startswith(INPUT_ROOT)):
            continue
        name = entry.get("data_name")
        if plain_name(name):
            try:
                os.symlink(target, os.path.join(data_links, name))
            except OSError:
                pass
        file_id = entry.get("file_id")
        if isinstance(workdir, str) and plain_name(file_id):
            link = os.path.join(workdir, file_id)
            try:
                os.symlink(target, link)
                made.append(link)
            except OSError:
                pass
    return made


def hide_files(links):
    for link in links:
        try:
            if os.path.islink(link):
                os.unlink(link)
        except OSError:
            pass
