# procos warm runner: imports one script once and calls its handle(task) per task.
#
# Protocol (procos <-> runner) on the runner's original stdin/stdout, which the script never
# sees: each frame is a 4-byte big-endian length and that many bytes of JSON.
#   runner -> {"ready": true} | {"startup": {"kind": "no_handle" | "exception" | "exit", ...}}
#   procos -> task                    (the JSON a process-mode script reads on stdin)
#   runner -> {"result": value} | {"exception": text} | {"exit": code} | {"invalid": text},
#             each with the task's captured "stdout" and "stderr"; "retire": true after a
#             MemoryError (the interpreter's state is suspect: procos replaces it).
# The script's own stdin is /dev/null, its sys.stdout/sys.stderr are captured per task, and
# anything written straight to file descriptor 1 goes to descriptor 2, never into the protocol.
import importlib.util
import io
import json
import os
import struct
import sys
import traceback

proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
_null = os.open(os.devnull, os.O_RDWR)
os.dup2(_null, 0)
os.dup2(2, 1)
sys.stdin = open(os.devnull)


def send(message):
    data = json.dumps(message).encode()
    proto_out.write(struct.pack(">I", len(data)) + data)


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = proto_in.read(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


def exit_code(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    return 1


def captured(fn):
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    try:
        return fn(), out, err
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


script = sys.argv[1]
spec = importlib.util.spec_from_file_location("procos_script", os.path.join(os.getcwd(), script))
module = importlib.util.module_from_spec(spec)


def defines_handle():
    try:
        with open(spec.origin, encoding="utf-8", errors="replace") as f:
            return "def handle(" in f.read()
    except OSError:
        return True


def load():
    # A stdin -> stdout script run at import fails on its empty stdin or exits: when it does not
    # even mention handle(), the missing handle() is the error to report.
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:
        if not defines_handle():
            return {"kind": "no_handle"}
        return {"kind": "exit", "code": exit_code(e)}
    except BaseException:
        if not defines_handle():
            return {"kind": "no_handle"}
        return {"kind": "exception", "text": traceback.format_exc()}
    if not callable(getattr(module, "handle", None)):
        return {"kind": "no_handle"}
    return None


problem, out, err = captured(load)
if problem is not None:
    problem["stdout"], problem["stderr"] = out.getvalue(), err.getvalue()
    send({"startup": problem})
    sys.exit(0)
send({"ready": True})

while True:
    (length,) = struct.unpack(">I", read_exact(4))
    task = json.loads(read_exact(length))

    def run():
        try:
            value = module.handle(task)
        except SystemExit as e:
            return {"exit": exit_code(e)}
        except MemoryError:
            text = traceback.format_exc()
            sys.stderr.write(text)
            return {"exception": text, "retire": True}
        except BaseException:
            text = traceback.format_exc()
            sys.stderr.write(text)
            return {"exception": text}
        try:
            json.dumps(value)
        except (TypeError, ValueError) as e:
            return {"invalid": "handle() returned a value that is not JSON: %s" % e}
        return {"result": value}

    reply, out, err = captured(run)
    reply["stdout"], reply["stderr"] = out.getvalue(), err.getvalue()
    send(reply)
