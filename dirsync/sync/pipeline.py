"""What every run shares, whichever its direction: its options, its result,
and the frame that records it in the run history and ends its report.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirsync.errors import DirsyncError
from dirsync.sync.plan import Counts
from dirsync.sync.progress import Progress, Silent
from dirsync.sync.report import Report

#: The message of a run stopped by SIGINT or SIGTERM (status ``interrupted``).
INTERRUPTED = "interrupted on request; the rest is applied by the next run"


@dataclass
class SyncOptions:
    dry_run: bool = False
    full: bool = False
    allow_deletes: int | None = None
    progress: Progress = field(default_factory=Silent)


@dataclass
class RunResult:
    """One connection in one direction: what its ``--json`` line says."""

    connection: str
    direction: str
    mode: str
    dry_run: bool
    status: str                      # ok | errors | stopped | interrupted
    counts: Counts
    report: Path | None
    files: dict[str, Path]
    run_id: int
    started: str
    ended: str
    message: str | None = None

    @property
    def exit_status(self) -> int:
        return {"ok": 0, "errors": 1, "stopped": 3, "interrupted": 130}.get(self.status, 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "direction": self.direction,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "status": self.status,
            "counts": self.counts.as_dict(),
            "report": str(self.report) if self.report else None,
            "files": {k: str(v) for k, v in self.files.items()},
            "run": self.run_id,
            "started": self.started,
            "ended": self.ended,
            "message": self.message,
        }


def recorded(run: Any) -> RunResult:
    """Run ``run._run()`` between its history row and its report, in either
    direction: a run that fails is recorded as failed and its report dropped."""
    run.run_id = run.state.start_run(run.name, run.direction, run.mode, run.options.dry_run)
    run.report = Report.create(run.config.reports, run.name, run.direction, run.run_id,
                               run.options.dry_run)
    try:
        result: RunResult = run._run()
        return result
    except DirsyncError as exc:
        run.state.end_run(run.run_id, "failed", run.counts.as_dict(), None, str(exc))
        run.report.discard()
        raise


def peak_memory_mb() -> float:
    """This process's peak resident memory, in MB.

    Linux's VmHWM counts only this program; ru_maxrss would also count the
    parent's memory from before exec().
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
