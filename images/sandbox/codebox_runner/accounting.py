"""What the kernel counted for the run, which the code cannot write: its CPU time and the
container's out-of-memory kills."""

import resource

CGROUP_MEMORY_EVENTS = (
    ("/sys/fs/cgroup/memory.events", "oom_kill"),
    ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
)


class CpuClock:
    """CPU time the run used, as the kernel counts it: the container's cgroup (v2 cpu.stat
    or v1 cpuacct), which the code cannot write; where a runtime shows no cgroup (gVisor),
    the reaped processes' own usage (every process of the code is this process's child or
    is reparented to it, and all are reaped before reading)."""

    # (file, nanoseconds per unit it counts in)
    CGROUP_FILES = (
        ("/sys/fs/cgroup/cpu.stat", 1000.0),
        ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1.0),
        ("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", 1.0),
    )

    def __init__(self):
        self.cgroup_ns = self._cgroup_ns()
        self.children_s = self._children_s()

    @classmethod
    def _cgroup_ns(cls):
        for path, ns_per_unit in cls.CGROUP_FILES:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                continue
            try:
                if path.endswith("cpu.stat"):
                    for line in text.splitlines():
                        key, _, value = line.partition(" ")
                        if key == "usage_usec":
                            return int(value) * ns_per_unit
                    continue
                return int(text.strip()) * ns_per_unit
            except ValueError:
                continue
        return None

    @staticmethod
    def _children_s():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def ms_since(self):
        if self.cgroup_ns is not None:
            now = self._cgroup_ns()
            if now is not None:
                return max(0.0, (now - self.cgroup_ns) / 1e6)
        return max(0.0, (self._children_s() - self.children_s) * 1000.0)


def read_oom_kills(files=CGROUP_MEMORY_EVENTS):
    """OOM kill counter of this container's memory cgroup (v1 or v2), or None."""
    for path, key in files:
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
        except (OSError, ValueError):
            continue
    return None
