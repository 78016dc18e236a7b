"""The retrieve queue: C-MOVE/C-GET jobs run in the background, a few at a time per node.

:class:`RetrieveQueue` is plain Python (no Qt; the window opens it through the session). Jobs run on
worker threads, at most ``per_node_limit`` at once against one node, first come first served
otherwise. Every change is reported to the listeners (:meth:`RetrieveQueue.add_listener`) as
an immutable :class:`RetrieveJob` snapshot, from the queue's own notifier thread, in the order
the changes happened; progress is coalesced to about ten snapshots a second per job.

Jobs are kept in a small SQLite file (WAL) so the list survives a restart; a retrieve that was
queued or running when the application quit starts again at the next start (the store
recognises the instances it already holds as duplicates, so running it again is safe).

The queue also holds send jobs (:meth:`RetrieveQueue.submit_send`, ``kind`` SEND): a study or
series of the local store C-STOREd to a node, sharing the node's limit, with progress, cancel
(after the instance being sent), Retry of only the instances not sent, and the reasons in
``details``; one interrupted by quitting resumes with the instances not sent yet.

Nothing here logs patient data: a job's ``label`` (patient name, study description) is for
display only and is written to the job file, never to the log at INFO or above.
"""

from workstation.jobs.model import JobKind, JobState, QueueClosed, RetrieveJob
from workstation.jobs.retrieve_queue import ChangeCallback, RetrieveQueue
from workstation.jobs.runner import PROGRESS_INTERVAL

__all__ = [
    "PROGRESS_INTERVAL",
    "ChangeCallback",
    "JobKind",
    "JobState",
    "QueueClosed",
    "RetrieveJob",
    "RetrieveQueue",
]
