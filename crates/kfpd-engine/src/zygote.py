# kfpd's warm interpreter for lightweight components (see warm.rs): imports kfp's
# executor once, then runs each task in a child forked ahead of it.
#
# Protocol: one request per line on stdin, its id, a space and a JSON object ({"cwd",
# "log", "env", "source", "args"}) that only the task's child parses; one JSON line
# per event on stdout: {"ready": true} once, then
# {"id", "pid"} when a task's child has it, and {"id", "exit"} or {"id", "signal"}
# when it ends, or {"id", "error"} when no child could take it.
import json, os, select, sys
os.environ["_KFP_RUNTIME"] = "true"
import argparse, atexit, contextlib, gc, importlib.util, io, logging, tempfile, threading, traceback, types, warnings
import kfp.dsl.executor_main  # the import every task would pay for
from kfp.dsl import executor as component_executor
from kfp.dsl import utils as component_utils

# What `python3 -m kfp.dsl.executor_main` would find and compile, found once.
EXECUTOR = importlib.util.find_spec("kfp.dsl.executor_main")
EXECUTOR_CODE = EXECUTOR.loader.get_code(EXECUTOR.name)
# Children forked ahead, each rehearsing while it waits: with two, a chain's next
# task finds one that has finished its rehearsal.
SPARES = 2
LOG_FORMAT = "[KFP Executor %(asctime)s %(levelname)s]: %(message)s"
# A component module of the shape the SDK writes (its decorator is compile-time only).
REHEARSAL_MODULE = "kfpd_rehearsal"
REHEARSAL_SOURCE = """
import kfp
from kfp import dsl
from kfp.dsl import *
from typing import *

def rehearsal(x: int) -> int:
    return x + 1
"""


def rehearse_arguments():
    parser = argparse.ArgumentParser(description="rehearsal")
    parser.add_argument("--component_module_path", type=str, help="a module")
    parser.add_argument("--function_to_execute", type=str, required=True, help="a function")
    parser.add_argument("--executor_input", type=str, help="an executor input")
    parser.parse_known_args(["--component_module_path", "m.py", "--function_to_execute", "f", "--executor_input", "{}"])


def rehearsal_input():
    # Outputs to /dev/null: nothing is written anywhere.
    return {
        "inputs": {"parameterValues": {"x": 1}},
        "outputs": {"parameters": {"Output": {"outputFile": os.devnull}}, "outputFile": os.devnull},
    }


def rehearse_logging_and_json():
    text = json.dumps(rehearsal_input())
    formatted = json.dumps(json.loads(text), indent=4)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.handle(logging.LogRecord("root", logging.INFO, "rehearsal.py", 1, "rehearsal %s", (formatted,), None))
    handler.close()
    dict(os.environ)  # the task compares its variables with these
    names = getattr(tempfile, "_get_candidate_names", None)
    if names:
        next(names())  # the name generator, seeded once per process


def rehearse_component(directory):
    # The executor's own loader and Executor on a throwaway component; what they
    # change in the process is put back.
    saved_path = list(sys.path)
    saved_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # a task compiles its module: so does the rehearsal
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = component_utils.load_module(module_name=REHEARSAL_MODULE, module_directory=directory)
            executor = component_executor.Executor(executor_input=rehearsal_input(), function_to_execute=module.rehearsal)
            executor.execute()
    finally:
        sys.dont_write_bytecode = saved_bytecode
        sys.path[:] = saved_path
        sys.modules.pop(REHEARSAL_MODULE, None)


def rehearse(directory, interrupt=None):
    """Does, on a throwaway input, the work every task does before its own code runs.

    In the zygote this loads what the executor imports lazily and fills caches; in a
    spare child it takes, ahead of the task, the copy-on-write page faults of
    touching the interpreter's shared objects (most of a forked task's cost). It
    stops early when `interrupt` (a spare's inbox) becomes readable: the task is
    never held up for more than one step. Best effort: a step that fails ends it.
    """
    steps = [rehearse_arguments, rehearse_logging_and_json]
    if directory:
        steps.append(lambda: rehearse_component(directory))
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        for step in steps:
            if interrupt is not None and select.select([interrupt], [], [], 0)[0]:
                return
            try:
                step()
            except Exception:
                return


def rehearsal_directory():
    # Beside the environment (the zygote's working directory), made once; None when
    # it cannot be written, and the component step is skipped.
    directory = os.path.join(os.getcwd(), ".kfpd-rehearsal")
    try:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, REHEARSAL_MODULE + ".py")
        # Replaced whole: children of an earlier zygote may be reading it.
        staged = "%s.%d" % (path, os.getpid())
        with open(staged, "w") as f:
            f.write(REHEARSAL_SOURCE)
        os.replace(staged, path)
        return directory
    except OSError:
        return None


def run_executor():
    # As `python3 -m` runs a module: a new __main__ holding it, the module itself
    # not imported (runpy would warn that it is).
    sys.modules.pop(EXECUTOR.name, None)
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=EXECUTOR.origin,
        __cached__=EXECUTOR.cached,
        __loader__=EXECUTOR.loader,
        __spec__=EXECUTOR,
        __package__=EXECUTOR.parent,
    )
    sys.modules["__main__"] = main
    exec(EXECUTOR_CODE, main.__dict__)


def set_environment(wanted):
    # Only what differs from the zygote's: each variable set or removed costs a
    # putenv, and the task's variables are mostly the zygote's.
    for key in [key for key in os.environ if key not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def run_task(request, done):
    code = 1
    task_pid = os.getpid()
    try:
        os.setpgid(0, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.chdir(request["cwd"])
        set_environment(request["env"])
        # The task's own code finds its temp dir as a fresh interpreter would.
        tempfile.tempdir = None
        # Where the program's `mktemp -d` makes the module's directory.
        program_dir = tempfile.mkdtemp(dir=os.environ.get("TMPDIR") or "/tmp")
        module = os.path.join(program_dir, "ephemeral_component.py")
        with open(module, "w") as f:
            f.write(request["source"])
        arguments = ["--component_module_path", module] + request["args"]
        sys.argv = [EXECUTOR.origin] + arguments
        sys.orig_argv = ["python3", "-m", EXECUTOR.name] + arguments
        # `python3 -m` puts the working directory first on the path, `-c` an empty entry.
        if sys.path and sys.path[0] == "":
            sys.path[0] = os.getcwd()
        try:
            run_executor()
            code = 0
        except SystemExit as exit:
            if exit.code is None:
                code = 0
            elif isinstance(exit.code, int):
                code = exit.code
            else:
                sys.stdout.flush()
                print(exit.code, file=sys.stderr)
                code = 1
        except BaseException:
            # What the task printed comes first, so the log ends with the reason.
            sys.stdout.flush()
            traceback.print_exc()
            code = 1
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown:
            shutdown()
        atexit._run_exitfuncs()
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        if os.getpid() == task_pid:
            # Said before the exit, so the task's end is not held up by tearing
            # down the process; a process the task forked does not say it.
            try:
                os.write(done, bytes([code & 0xFF]))
            except OSError:
                pass
        os._exit(code & 0xFF)


def main():
    requests = os.dup(0)
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    # pidfd -> the task it watches; the read end of a task's "done" pipe -> the same.
    children = {}
    dones = {}
    # Forked ahead, oldest first: (pid, inbox writer, done reader).
    spares = []
    directory = rehearsal_directory()

    def send(message):
        os.write(replies, (json.dumps(message) + "\n").encode())

    def fork_spare():
        # A child forked ahead of its task and waiting for it on a pipe: the fork is
        # off the task's path, and done while the previous task runs.
        inbox, outbox = os.pipe()
        done_read, done_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (inbox, outbox, done_read, done_write):
                os.close(fd)
            return None
        if pid == 0:
            others = [fd for spare in spares for fd in spare[1:]]
            for fd in [outbox, done_read, requests, replies] + others + list(children) + list(dones):
                os.close(fd)
            rehearse(directory, interrupt=inbox)
            chunks = []
            while True:
                chunk = os.read(inbox, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(inbox)
            if not chunks:
                os._exit(0)  # the zygote went away before handing over a task
            run_task(json.loads(b"".join(chunks)), done_write)
        os.close(inbox)
        os.close(done_write)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        return pid, outbox, done_read

    def hand_over(spare, line):
        pid, outbox, done_read = spare
        try:
            os.write(outbox, line)
            os.close(outbox)
            return pid, done_read
        except OSError:
            os.close(outbox)
            os.close(done_read)
            os.waitpid(pid, 0)
            return None

    def top_up():
        while len(spares) < SPARES:
            spare = fork_spare()
            if spare is None:
                return
            spares.append(spare)

    # Objects imported so far are never collected: the collector skips them, so
    # forked children do not copy the pages it would otherwise touch.
    rehearse(directory)
    gc.collect()
    gc.freeze()
    top_up()
    send({"ready": True})
    pending = b""
    while True:
        readable, _, _ = select.select([requests] + list(children) + list(dones), [], [])
        for fd in readable:
            if fd == requests:
                chunk = os.read(requests, 1 << 16)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    head, _, body = line.partition(b" ")
                    task_id = int(head)
                    started = None
                    while started is None and spares:
                        started = hand_over(spares.pop(0), body)
                    if started is None:
                        spare = fork_spare()
                        started = hand_over(spare, body) if spare else None
                    if started is None:
                        send({"id": task_id, "error": "cannot fork a task process"})
                        continue
                    pid, done_read = started
                    task = {"id": task_id, "pid": pid, "reported": False}
                    children[os.pidfd_open(pid)] = task
                    dones[done_read] = task
                    send({"id": task_id, "pid": pid})
                    top_up()
            elif fd in dones:
                task = dones.pop(fd)
                said = os.read(fd, 1)
                os.close(fd)
                if said and not task["reported"]:
                    task["reported"] = True
                    send({"id": task["id"], "exit": said[0]})
            elif fd in children:
                task = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(task["pid"], 0)
                if task["reported"]:
                    continue
                task["reported"] = True
                if os.WIFSIGNALED(status):
                    send({"id": task["id"], "signal": os.WTERMSIG(status)})
                else:
                    send({"id": task["id"], "exit": os.WEXITSTATUS(status)})

main()
