"""`preimage explore` started as a user starts it, and the requests the tests send it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

CLI = [sys.executable, "-m", "preimage"]


def start_server(*args: str) -> tuple[subprocess.Popen, str, str]:
    """The command started as a user starts it; the process, the URL it prints and what it printed before."""
    process = subprocess.Popen(
        [*CLI, "explore", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    printed = ""
    for _ in range(20):
        line = process.stdout.readline()
        printed += line
        found = re.search(r"(http://\S+/)", line)
        if found or not line:
            break
    assert found, f"no URL printed: {printed}"
    return process, found.group(1), printed


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def post_raw(url: str, data: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    """POST ``data`` as it is; the status and the reply's bytes."""
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def post(url: str, body) -> tuple[int, dict]:
    """POST ``body`` as JSON; the status and the reply's JSON."""
    status, reply = post_raw(url, json.dumps(body).encode())
    return status, json.loads(reply)


def send_head_only(url: str, path: str, headers: dict[str, str], prefix: bytes) -> tuple[int, bytes]:
    """A POST that declares ``headers`` and sends only ``prefix`` of its body, then waits for the answer: what a
    client sending a huge body sees from a server that refuses it before reading it (a server that reads it all
    never answers, and this times out)."""
    import http.client
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": where.netloc, **headers}.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + prefix)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
