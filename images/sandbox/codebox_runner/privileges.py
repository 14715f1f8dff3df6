"""Who may do what in the container. The runner runs as root with only CAP_SETUID,
CAP_SETGID and CAP_KILL (the container's whole capability set); the code's process drops
to its own uid before it reads its job, and the runner shrugs off the signals that would
otherwise end it before it has sent the outputs."""

import ctypes
import os
import signal

from .constants import PR_SET_DUMPABLE

# The image's `sandbox` user: the code's uid when the host names none, and its gid always.
DEFAULT_CODE_UID = 10001
CODE_GID = 10001
# Uids the host may pick for the code: from the image's user up to, not including, this.
CODE_UID_LIMIT = 2**31 - 1

# Signals whose default action would end this process; none of them may cost the outputs.
SHIELDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")


def code_uid(environ=os.environ):
    """This container's own uid for the code (the host picks one per container, so the
    kernel's per-user quotas are per run); taken out of the environment before the code's
    process is forked. DEFAULT_CODE_UID when the host names none or no valid one."""
    value = environ.pop("CODEBOX_CODE_UID", "")
    try:
        uid = int(value)
    except ValueError:
        return DEFAULT_CODE_UID
    return uid if DEFAULT_CODE_UID <= uid < CODE_UID_LIMIT else DEFAULT_CODE_UID


# Read once, when the runner starts: the code's process never sees the variable.
CODE_UID = code_uid()


def shield_signals():
    for name in SHIELDED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def unshield_signals():
    for name in SHIELDED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def drop_privileges():
    """Becomes the code's uid for good: no supplementary groups, no capabilities left (a
    setuid away from root clears them), nothing of this process reachable from the code."""
    if os.getuid() != 0:
        return  # started as an unprivileged user already (an operator's own image run)
    os.setgroups([])
    os.setgid(CODE_GID)
    os.setuid(CODE_UID)


def set_dumpable(value):
    """Whether this process's memory may be read by its uid (0 for the runner, which holds
    the key; 1 for the code's process, like any program)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass
