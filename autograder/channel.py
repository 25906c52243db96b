"""The grader's end of the worker's line protocol: requests out, answers in, as plain data.

Everything the worker writes is untrusted: the student's code can write to the answer channel
itself. Only a well-formed line with the id of the pending request is taken as its answer;
anything else is dropped, so a forged or stale line can stand only for what the student's own
functions could have returned, and never for the answer to a different request. Nothing here
blocks past its deadline: a worker that stops reading or writing is reported, not waited for.
(The worker's end is sandbox/worker.py, which describes the messages.)
"""

import base64
import json
import math
import os
import select
import time

import numpy as np

CHUNK = 1 << 20


def encode_array(array) -> dict:
    array = np.ascontiguousarray(array, dtype="<f8")
    return {"ndarray": base64.b64encode(array.tobytes()).decode("ascii"), "shape": list(array.shape),
            "dtype": "float64"}


def encode_argument(value):
    """An argument of a call as JSON: arrays as float64 (integer arrays marked to arrive as int64)."""
    if isinstance(value, np.ndarray):
        encoded = encode_array(value)
        if np.issubdtype(value.dtype, np.integer):   # counts (batch sizes) reach the student as ints
            encoded["as"] = "int64"
        return encoded
    if isinstance(value, tuple):
        return list(value)
    return value


def decode_array(encoded, limit=None) -> np.ndarray:
    """An answer's array as a plain, writable float64 ndarray; ValueError when it is not well formed."""
    if not isinstance(encoded, dict) or not isinstance(encoded.get("ndarray"), str):
        raise ValueError("not an encoded array")
    shape = encoded.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and 0 <= n < 2**31 for n in shape):
        raise ValueError("malformed shape")
    if len(shape) > 32:
        raise ValueError("too many dimensions")
    data = base64.b64decode(encoded["ndarray"], validate=True)
    if len(data) != 8 * math.prod(shape) or (limit and len(data) > limit):
        raise ValueError("size does not match shape")
    return np.frombuffer(data, dtype="<f8").astype(np.float64).reshape(shape)


def parse_answer(line: bytes):
    """One answer line as a dict, or None when it is not one (garbage, too deeply nested JSON)."""
    if not line.startswith(b"{"):      # the worker writes compact objects: skip other lines cheaply
        return None
    try:
        answer = json.loads(line.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None
    return answer if isinstance(answer, dict) else None


class Channel:
    """Requests to a worker's stdin and answers from its stdout, each with a deadline."""

    def __init__(self, process, answer_bytes: int):
        self.process = process          # a subprocess.Popen with pipes
        self.answer_bytes = answer_bytes
        self.buffer = bytearray()       # what the worker wrote past the last answer line

    def send(self, data: bytes, seconds) -> bool:
        """Write a request without ever blocking past ``seconds`` (a busy worker may not read it)."""
        fd = self.process.stdin.fileno()
        os.set_blocking(fd, False)
        deadline = time.monotonic() + seconds
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                if select.select([], [fd], [], left)[1]:
                    view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError:      # the worker is gone (broken pipe)
                return False
        return True

    def discard_unasked(self):
        """Drop whatever the worker wrote that nobody asked for: only lines written after a request
        can answer it."""
        self.buffer.clear()
        fd = self.process.stdout.fileno()
        for _ in range(max(1, self.answer_bytes >> 20)):
            try:
                if not select.select([fd], [], [], 0)[0] or not os.read(fd, CHUNK):
                    return
            except OSError:
                return

    def read_answer(self, want: int, seconds):
        """The answer with id ``want`` as a dict, or "timeout", "eof" or "too long". Lines with
        another id or that are not JSON objects are skipped: stale, forged or garbled."""
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + seconds
        start = searched = 0          # offsets into the buffer, so that many short lines cost O(n)
        while True:
            newline = self.buffer.find(b"\n", searched)
            if newline >= 0:
                answer = parse_answer(bytes(self.buffer[start:newline]))
                start = searched = newline + 1
                if answer is not None and type(answer.get("id")) is int and answer["id"] == want:
                    del self.buffer[:start]
                    return answer
                if time.monotonic() < deadline:
                    continue
            del self.buffer[:start]
            start, searched = 0, len(self.buffer)
            if len(self.buffer) > self.answer_bytes:
                return "too long"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                if not select.select([fd], [], [], left)[0]:
                    continue
                chunk = os.read(fd, CHUNK)
            except OSError:
                return "eof"
            if not chunk:
                return "eof"
            self.buffer += chunk
