"""codebox in-container runner: the container's PID 1 (`python3 -u /opt/codebox/runner.py`).

The runner is the package codebox_runner beside this file; its protocol with the host is
described in codebox_runner/protocol.py.
"""

from codebox_runner.main import main

if __name__ == "__main__":
    main()
