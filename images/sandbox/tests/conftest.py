"""The runner's tests run on the host, without Docker and without the image's libraries:
images/sandbox is put on the path, as PYTHONPATH=/opt/codebox puts it in the image."""

import os
import sys

SANDBOX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SANDBOX_DIR not in sys.path:
    sys.path.insert(0, SANDBOX_DIR)
