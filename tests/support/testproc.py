"""Process helpers shared by the Python test suites: free loopback ports, stopping by PID, waiting."""
import os
import random
import signal
import socket
import subprocess
import time


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Returns predicate()'s first truthy value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A free port on 127.0.0.1 below the kernel's ephemeral range.

    Tests pick a port first and start the server later (registries must know Ferry's address
    before Ferry starts). A port from the ephemeral range can be taken meanwhile by any
    outgoing connection on the machine (seen: skopeo's); ports below it are only ever taken
    by an explicit bind, so the window is closed to everything but another test's random pick.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


def stop_pid(proc, timeout=5):
    """Stops a subprocess.Popen by its PID: SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
