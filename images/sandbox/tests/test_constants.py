"""The runner's numbers are named once, in constants.py."""

import glob
import os
import re

from codebox_runner import constants

PACKAGE_DIR = os.path.dirname(constants.__file__)


def test_no_bare_size_outside_the_constants():
    bare = re.compile(r"\b(65536|1 << 20|1024 \* 1024)\b")
    found = []
    for path in glob.glob(os.path.join(PACKAGE_DIR, "*.py")):
        if os.path.basename(path) == "constants.py":
            continue
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if bare.search(line):
                    found.append("%s:%d: %s" % (os.path.basename(path), number, line.strip()))
    assert found == []


def test_each_65536_has_its_own_name():
    named = {name for name in dir(constants) if getattr(constants, name) == 65536}
    assert named == {
        "READ_CHUNK", "CLOSE_FDS_BELOW", "MAX_ERROR_REPORT_BYTES", "MAX_PACKAGE_REQUEST_BYTES",
    }


def test_every_constant_says_why():
    with open(constants.__file__) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z_]+ = ", line):
            j = i - 1
            while j >= 0 and re.match(r"^[A-Z_]+ = ", lines[j]):
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), "no comment above %s" % line
