"""Process helpers shared by the Python test suites: free loopback ports, stopping by PID."""
import os
import signal
import socket
import subprocess


def free_port():
    """A port the kernel has just handed out on 127.0.0.1 (bind to port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
