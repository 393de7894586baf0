"""The server's main: ranks up, HTTP up, scheduler loop on the main thread until SIGINT or
SIGTERM (or the self-check is done), then the ranks shut down in order, so that CUDA and
nsys see every process exit normally (nsys writes cuda-profiler range reports at exit)."""
import collections
import os
import shutil
import signal
import sys
import tempfile
import threading

from . import args as argsmod
from . import selfcheck
from .http_api import Server
from .ranks import RankError, RankGroup, make_logger
from .scheduler import Scheduler


def write_port_file(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    try:
        args = argsmod.parse(argv)
    except argsmod.ArgError as e:
        print("server.py: error: %s" % e, file=sys.stderr)
        return 2
    lines = collections.deque(maxlen=5000) if args.self_check else None
    log = make_logger(0, args.tp_size, lines)
    check_dir = None
    if args.self_check:
        args.port = 0
        args.enable_metrics = True
        check_dir = args.self_check_dir or tempfile.mkdtemp(prefix="gpuserver-selfcheck-")

    stop = threading.Event()
    sched = None

    def on_signal(signum, _frame):
        log("received %s: shutting down" % signal.Signals(signum).name)
        stop.set()
        if sched is not None:
            sched.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    ranks = RankGroup(args, log)
    try:
        infos = ranks.start()
    except Exception as e:
        log("FATAL: the ranks did not start: %s" % e)
        return 1
    sched = Scheduler(args, ranks, log)
    if stop.is_set():
        sched.stop()
    try:
        httpd = Server((args.host, args.port), sched, args, infos, log)
    except OSError as e:
        log("FATAL: cannot listen on %s:%d: %s" % (args.host, args.port, e))
        ranks.close()
        return 1
    args.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    log("Uvicorn running on http://%s:%d (this server's HTTP API; tp_size %d, engine %s)"
        % (args.host, args.port, args.tp_size, args.engine))
    log("The server is fired up and ready to roll!")
    if args.port_file:
        write_port_file(args.port_file, args.port)

    runner = None
    if args.self_check:
        base = "http://%s:%d" % (args.host, args.port)
        runner = selfcheck.Runner(base, args, lines, check_dir, sched.stop,
                                  out=lambda m: (sys.stdout.write(m + "\n"), sys.stdout.flush()))
        runner.start()

    rc = 0
    try:
        sched.run()
    except RankError as e:
        log("FATAL: %s" % e)
        rc = 1
    finally:
        httpd.shutdown()
        httpd.server_close()
        ranks.close(graceful=(rc == 0))
    if runner is not None:
        runner.join(5)
        if not runner.passed:
            rc = rc or 1
        if args.self_check_dir is None:
            shutil.rmtree(check_dir, ignore_errors=True)
    log("server exited (code %d)" % rc)
    return rc
