"""Background jobs for the service (stem separation): one at a time, polled by id.

One worker thread runs jobs in order, so two heavy separations never share the
memory at once; a request for the same work while it is queued or running gets the
existing job back.

Progress comes two ways: ``set_progress(fraction, words)``, handed to the work, and
:meth:`Job.report_chunks` for work that runs in countable steps (Demucs chunks). The
work reaches the latter through :func:`current_job` (the job this worker thread is
running), so code deep down (``ui.optional.Stems``) reports chunks without every
caller in between passing a second callback. Either one is where a cancel lands.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field

KEEP_FINISHED = 200


class JobCancelled(BaseException):
    """Raised inside a job's work (from its progress callback) once cancel was asked.

    A ``BaseException``, like ``asyncio.CancelledError`` and for the same reason: the
    work's own ``except Exception`` (the stem cache records failures that way) must
    not mistake a cancel for a failure and record it, or swallow it.
    """


_current: ContextVar[Job | None] = ContextVar("sonic_current_job", default=None)


def current_job() -> Job | None:
    """The job whose work is running in this thread, None outside a job."""
    return _current.get()


@dataclass
class Job:
    id: str
    kind: str
    key: str
    status: str = "queued"  # queued, running, done, failed, cancelled
    progress: float | None = None  # 0..1 when known
    detail: str | None = None  # progress in words ("chunk 12 / 80")
    chunks_done: int | None = None  # steps run, for work that counts them
    chunks_total: int | None = None  # steps in all (None: not known yet)
    cancel_requested: bool = False
    result: dict | None = None
    error: str | None = None
    status_code: int | None = None  # an HTTP status that describes the failure
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress,
            "detail": self.detail,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def report_chunks(self, done: int, total: int | None) -> None:
        """``done`` of ``total`` chunks ran; raises :class:`JobCancelled` once cancel was asked.

        From then on the job's fraction is the chunks' (a finer and steadier measure
        than the seconds written, which lag by the overlap): one measure keeps the
        bar from stepping back.
        """
        if self.cancel_requested:
            raise JobCancelled("cancelled")
        self.chunks_done, self.chunks_total = int(done), total
        if total:
            self.progress = max(0.0, min(1.0, done / total))
        self.detail = f"chunk {done} / {total}" if total else f"chunk {done}"


class Jobs:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sonic-job")

    def submit(
        self,
        kind: str,
        key: str,
        work: Callable[[Callable[[float | None], None]], dict],
        error_status: Callable[[BaseException], int | None] = lambda exc: None,
    ) -> Job:
        """Queue ``work(set_progress)``; returns the job (an unfinished one for ``key``)."""
        with self._lock:
            for job in self._jobs.values():
                if job.key == key and job.status in ("queued", "running"):
                    return job
            job = Job(id=uuid.uuid4().hex, kind=kind, key=key)
            self._jobs[job.id] = job
            self._trim()

        def set_progress(fraction: float | None, detail: str | None = None) -> None:
            # The work's own pace is the one place it can be stopped cleanly.
            if job.cancel_requested:
                raise JobCancelled("cancelled")
            if job.chunks_done is not None:
                return  # the chunks say it already (see Job.report_chunks)
            job.progress = None if fraction is None else max(0.0, min(1.0, float(fraction)))
            job.detail = detail

        def run() -> None:
            if job.cancel_requested:
                job.status, job.finished_at = "cancelled", time.time()
                return
            job.status, job.started_at = "running", time.time()
            token = _current.set(job)
            try:
                job.result = work(set_progress)
                job.status, job.progress = "done", 1.0
            except JobCancelled:
                job.status, job.error = "cancelled", "cancelled on request"
            except Exception as exc:  # reported through GET /jobs/{id}
                job.error = str(exc) or traceback.format_exception_only(type(exc), exc)[-1]
                job.status_code = error_status(exc)
                job.status = "failed"
            finally:
                _current.reset(token)
                job.finished_at = time.time()

        self._pool.submit(run)
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Ask a queued or running job to stop (at its next progress report)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None and job.status in ("queued", "running"):
            job.cancel_requested = True
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _trim(self) -> None:
        ended = ("done", "failed", "cancelled")
        finished = [j.id for j in self._jobs.values() if j.status in ended]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
