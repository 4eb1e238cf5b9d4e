"""evicorn's ASGI bridge, Python side (compiled into asgi.so).

startup() runs on evicorn's loop thread from the plugin's startup hook,
before the worker accepts a connection: it starts the asyncio thread (uvloop
when importable, like uvicorn's --loop auto), imports the app there, and runs
the lifespan startup. From then on every request arrives through
_evicorn.drain() (watching the bridge's eventfd) as a Req, and run(req) is
the task that calls the app. shutdown() runs the lifespan shutdown from the
plugin's shutdown hook and stops the thread.
"""
import asyncio
import importlib
import inspect
import os
import sys
import threading
import traceback

import _evicorn

CRITICAL, ERROR, WARNING, INFO, DEBUG, TRACE = range(6)


def log(level, message):
    _evicorn.log(level, message)


def last_line(text):
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def format_exception(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class LoadError(Exception):
    pass


# ---- the app ----------------------------------------------------------------


def import_app(spec, factory, interface="auto"):
    module_name, _, attrs = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name != module_name:
            raise
        raise LoadError('Could not import module "%s".' % module_name) from exc
    app = module
    try:
        for attr in attrs.split("."):
            app = getattr(app, attr)
    except AttributeError:
        raise LoadError('Attribute "%s" not found in module "%s".' % (attrs, module_name)) from None
    if factory:
        try:
            app = app()
        except TypeError as exc:
            raise LoadError("Error loading ASGI app factory: %s" % exc) from exc
    if interface == "wsgi":
        return app
    return asgi3(app, interface)


def looks_like_wsgi(app):
    """Whether app takes (environ, start_response): a WSGI app served as ASGI 2."""
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 2


def asgi3(app, interface="auto"):
    """The app as an ASGI 3 callable (uvicorn's --interface: auto tells
    ASGI 3 from ASGI 2 as uvicorn does)."""
    if interface == "asgi3":
        return app
    if interface == "auto":
        if inspect.isclass(app):
            is3 = hasattr(app, "__await__")
        elif inspect.isfunction(app):
            is3 = asyncio.iscoroutinefunction(app)
        else:
            is3 = asyncio.iscoroutinefunction(getattr(app, "__call__", None))
        if is3:
            return app
        if looks_like_wsgi(app):
            log(WARNING, "The app takes (environ, start_response): a WSGI app? "
                "Serve it with --interface wsgi.")

    async def asgi2(scope, receive, send):
        instance = app(scope)
        await instance(receive, send)

    return asgi2


def make_runner(app):
    async def run(req):
        try:
            await app(req.scope(), req.receive, req.send)
        except BaseException as exc:  # noqa: B902 - the server reports everything
            if req.finish(exc) and not isinstance(exc, asyncio.CancelledError):
                log(ERROR, "Exception in ASGI application\n" + format_exception(exc))
        else:
            req.finish(False)

    return run


# ---- lifespan -----------------------------------------------------------------


class Lifespan:
    """The lifespan protocol as uvicorn's LifespanOn runs it."""

    def __init__(self, app, mode, state):
        self.app = app
        self.mode = mode
        self.state = state
        self.queue = asyncio.Queue()
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.startup_failed = False
        self.shutdown_failed = False
        self.error = False
        self.message = ""

    async def main(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: B902
            self.error = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.mode == "auto":
                log(INFO, "ASGI 'lifespan' protocol appears unsupported.")
            else:
                log(ERROR, "Exception in 'lifespan' protocol\n" + format_exception(exc))
                self.message = "Exception in 'lifespan' protocol: " + last_line(
                    traceback.format_exception_only(type(exc), exc)[-1])
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    async def receive(self):
        return await self.queue.get()

    async def send(self, message):
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            if self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError("Got invalid state transition on lifespan protocol.")
            self.startup_event.set()
        elif kind == "lifespan.startup.failed":
            if self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError("Got invalid state transition on lifespan protocol.")
            self.startup_event.set()
            self.startup_failed = True
            self.message = message.get("message") or ""
        elif kind == "lifespan.shutdown.complete":
            if not self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError("Got invalid state transition on lifespan protocol.")
            self.shutdown_event.set()
        elif kind == "lifespan.shutdown.failed":
            if not self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError("Got invalid state transition on lifespan protocol.")
            self.shutdown_event.set()
            self.shutdown_failed = True
            self.message = message.get("message") or ""
        else:
            raise RuntimeError("Unexpected ASGI lifespan message '%s'." % kind)

    async def startup(self):
        """None when the app may serve, else the reason it may not."""
        log(INFO, "Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed or (self.error and self.mode == "on"):
            if self.startup_failed and self.message:
                log(ERROR, self.message)
            log(ERROR, "Application startup failed. Exiting.")
            reason = last_line(self.message) or "lifespan.startup.failed"
            return "Application startup failed: " + reason
        log(INFO, "Application startup complete.")
        return None

    async def shutdown(self):
        if self.error:
            return
        log(INFO, "Waiting for application shutdown.")
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed or (self.error and self.mode == "on"):
            if self.message:
                log(ERROR, self.message)
            log(ERROR, "Application shutdown failed.")
        else:
            log(INFO, "Application shutdown complete.")


# ---- the asyncio thread ---------------------------------------------------------


class Bridge:
    def __init__(self):
        self.app = None
        self.lifespan = None
        self.state = {}
        self.loop = None
        self.thread = None

    def new_loop(self, kind):
        """uvicorn's --loop: auto (uvloop when importable), asyncio, none
        (asyncio), uvloop, or module:attr naming a loop factory."""
        if kind in ("asyncio", "none"):
            return asyncio.new_event_loop()
        if kind in ("auto", "uvloop"):
            try:
                import uvloop
            except ImportError:
                if kind == "uvloop":
                    raise LoadError("--loop uvloop: uvloop is not installed for %s"
                                    % sys.executable) from None
                return asyncio.new_event_loop()
            return uvloop.new_event_loop()
        module_name, _, attr = kind.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise LoadError("Error loading custom loop setup function. %s" % exc) from None
        return factory()

    def start_thread(self, loop_kind):
        self.loop = self.new_loop(loop_kind)
        ready = threading.Event()

        self.stopped = self.loop.create_future()

        async def serve():
            await self.stopped

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.add_reader(_evicorn.fd(), _evicorn.drain)
            self.loop.call_soon(ready.set)
            try:
                # Under a root task, as asyncio.run and uvicorn run theirs:
                # libraries look for it. anyio keeps its worker threads
                # (to_thread: FastAPI's def routes, FileResponse's stat) for
                # the root task's life; without one it ties them to the
                # calling request's task and starts a thread per call.
                self.loop.run_until_complete(serve())
            finally:
                try:
                    self.loop.remove_reader(_evicorn.fd())
                except Exception:  # noqa: BLE001
                    pass
                # Frees the loop's own resources (uvloop's handles).
                try:
                    self.loop.close()
                except Exception:  # noqa: BLE001
                    pass

        self.thread = threading.Thread(target=run, name="evicorn-asgi", daemon=True)
        self.thread.start()
        ready.wait()

    def call(self, fn, *args):
        """Runs coroutine function fn(*args) on the asyncio thread; waits."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result()

    def stop_thread(self):
        if self.thread is None:
            return
        def finish():
            if not self.stopped.done():
                self.stopped.set_result(None)

        self.loop.call_soon_threadsafe(finish)
        self.thread.join(10)
        self.thread = None

    async def load(self, spec, factory, interface):
        """Imports the app on the asyncio thread, as uvicorn does inside its
        running loop; returns None or the reason it failed."""
        self.app, reason = load_app(spec, factory, interface)
        if reason is None:
            _evicorn.configure(make_runner(self.app), asyncio.get_running_loop(), self.state)
        return reason

    async def start_lifespan(self, mode):
        self.lifespan = Lifespan(self.app, mode, self.state)
        return await self.lifespan.startup()

    async def stop_lifespan(self):
        await self.lifespan.shutdown()

    async def close(self):
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.shutdown_asyncgens(), 5)
        except Exception:  # noqa: BLE001
            pass


def load_app(spec, factory, interface):
    """(app, None), or (None, why it could not be loaded)."""
    kind = "WSGI" if interface == "wsgi" else "ASGI"
    try:
        return import_app(spec, factory, interface), None
    except LoadError as exc:
        cause = exc.__cause__
        if cause is not None:
            log(ERROR, format_exception(cause))
            return None, 'Error loading %s app "%s". %s (%s)' % (
                kind, spec, exc,
                last_line(traceback.format_exception_only(type(cause), cause)[-1]))
        return None, 'Error loading %s app "%s". %s' % (kind, spec, exc)
    except BaseException as exc:  # noqa: B902 - an app that fails to import
        log(ERROR, format_exception(exc))
        return None, 'Error loading %s app "%s": %s' % (
            kind, spec, last_line(traceback.format_exception_only(type(exc), exc)[-1]))


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333): a file-like object's contents, read in
    blocks; close() closes it."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def start_wsgi(spec, factory):
    """A WSGI app runs on evicorn's thread pool: no asyncio thread, and no
    lifespan (WSGI has none)."""
    global load_failed
    app, reason = load_app(spec, factory, "wsgi")
    load_failed = reason is not None
    if reason is None:
        _evicorn.configure_wsgi(app, FileWrapper, format_exception)
        log(INFO, "Serving WSGI app %s on the thread pool (%s threads)."
            % (spec, _evicorn.config("threads")))
    return reason


bridge = None
# Whether the last startup failed because the app could not be loaded (an
# import error: evicorn exits 1, as uvicorn does) rather than in its
# lifespan startup (exit 3).
load_failed = False


def startup():
    """Called by the plugin's startup hook; None, or why it failed."""
    global bridge
    b = Bridge()
    spec = _evicorn.config("app")
    app_dir = _evicorn.config("app_dir")
    factory = _evicorn.config("factory") == "1"
    mode = _evicorn.config("lifespan") or "auto"
    interface = _evicorn.config("interface") or "auto"
    global load_failed
    # The app, and a custom loop factory, are imported from APP's folder
    # first (--app-dir), as uvicorn does.
    if app_dir is not None:
        sys.path.insert(0, app_dir)
    if interface == "wsgi":
        return start_wsgi(spec, factory)
    try:
        b.start_thread(_evicorn.config("loop") or "auto")
    except LoadError as exc:
        load_failed = True
        return str(exc)
    try:
        reason = b.call(b.load, spec, factory, interface)
        load_failed = reason is not None
        if reason is None and mode != "off":
            reason = b.call(b.start_lifespan, mode)
    except BaseException as exc:  # noqa: B902
        log(ERROR, format_exception(exc))
        reason = last_line(traceback.format_exception_only(type(exc), exc)[-1])
    if reason is not None:
        b.stop_thread()
        return reason
    bridge = b
    return None


def shutdown():
    """Called by the plugin's shutdown hook, after the last request."""
    b = bridge
    if b is None:
        return
    try:
        if b.lifespan is not None:
            b.call(b.stop_lifespan)
        b.call(b.close)
    finally:
        b.stop_thread()
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:  # noqa: BLE001
                pass
