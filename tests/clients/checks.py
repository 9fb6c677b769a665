"""What the client compatibility scripts share: checks that print one line each ("ok: ..."
or "FAIL: ..."), stop once the broker no longer answers, and a watchdog that bounds the
whole script.

`probe` is the script's own check that the broker still answers a metadata request on a new
connection (a function, or a coroutine function for `AsyncChecks`); it prints what it saw
and returns whether it did.
"""
import asyncio
import os
import threading
import time
import traceback


class Checks:
    """Runs checks, prints one line each, and bounds the whole script with a watchdog."""

    def __init__(self, label, limit_s, probe):
        self.label = label
        self.probe = probe
        self.failed = []
        self.current = "start-up"
        # The check after whose failure the broker stopped answering; later checks are not run.
        self.down_after = None
        watchdog = threading.Timer(limit_s, self._timed_out, args=(limit_s,))
        watchdog.daemon = True
        watchdog.start()

    def _timed_out(self, limit_s):
        print(f"FAIL: whole script timed out after {limit_s} s (during: {self.current})", flush=True)
        print(f"{self.label}: {len(self.failed) + 1} check(s) failed", flush=True)
        os._exit(1)

    def _starts(self, what, always):
        """Whether the check `what` runs; one that does not is reported as failed."""
        if self.down_after and not always:
            self.skip(what, f"the broker stopped answering after: {self.down_after}")
            return False
        self.current = what
        return True

    def _failed(self, what, err, started):
        took = time.monotonic() - started
        print(f"FAIL: {what}: {type(err).__name__}: {err} [{took:.1f} s]", flush=True)
        if os.environ.get("TRACEBACK"):
            traceback.print_exc()
        self.failed.append(what)

    def _passed(self, what, result, started):
        took = time.monotonic() - started
        detail = f" ({result})" if isinstance(result, str) else ""
        print(f"ok: {what}{detail} [{took:.1f} s]", flush=True)
        return True if result is None else result

    def run(self, what, fn, *args, always=False, **kwargs):
        """Runs `fn(*args, **kwargs)` as one check. Once the broker stopped answering, checks
        are not run, except closing ones (`always`)."""
        if not self._starts(what, always):
            return None
        started = time.monotonic()
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every failure is reported, not raised
            self._failed(what, err, started)
            if not self.probe():
                self.down_after = what
            return None
        return self._passed(what, result, started)

    def skip(self, what, why):
        print(f"FAIL: {what}: not run because {why}", flush=True)
        self.failed.append(what)

    def finish(self):
        if self.failed:
            print(f"{self.label}: {len(self.failed)} check(s) failed: {' | '.join(self.failed)}", flush=True)
            os._exit(1)
        print(f"{self.label}: all checks passed", flush=True)
        os._exit(0)


class AsyncChecks(Checks):
    """Checks that are coroutines, each with a time limit."""

    async def run(self, what, limit_s, coroutine, always=False):
        """Awaits `coroutine` as one check, for at most `limit_s`. Once the broker stopped
        answering, checks are not run, except closing ones (`always`)."""
        if not self._starts(what, always):
            coroutine.close()
            return None
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(coroutine, limit_s)
        except Exception as err:  # noqa: BLE001 - every failure is reported, not raised
            if isinstance(err, asyncio.TimeoutError):
                err = TimeoutError(f"no answer within {limit_s} s")
            self._failed(what, err, started)
            if not await self.probe():
                self.down_after = what
            return None
        return self._passed(what, result, started)
