"""Peak resident memory of the current process, for the benchmarks' child processes.

`ru_maxrss` is kept across `exec` on Linux, so a child started by a large parent would report
the parent's peak; `/proc/self/status` VmHWM is the process's own.

Example:
    >>> own_peak_rss_mb() > 0
    True
"""
import resource


def own_peak_rss_mb():
    """This process's own peak resident memory in MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
