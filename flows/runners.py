"""Which task runner a flow's fan-out uses: a thread pool, or Dask worker processes.

``[orchestration] task_runner`` decides:

- ``threads`` (the default): submitted task runs are threads in the flow run's own process.
- ``dask``: submitted task runs go to a Dask cluster through Prefect's ``DaskTaskRunner``
  (prefect-dask). With ``dask_address`` unset, the flow run starts a local cluster on
  127.0.0.1 for its own duration: ``dask_workers`` worker processes with
  ``dask_threads_per_worker`` threads each, and no dashboard. With ``dask_address`` set, it
  connects to that running scheduler, and the task runs happen on that cluster's workers,
  wherever they are. Switching between the two is a config change; the flow code is the same.

What runs where under Dask: the flow function, and every task it calls directly rather than
through ``.submit()`` (reading the lake state, publishing the manifest, the report), run in
the flow run's process, and so do the local simulated venues it starts. Submitted tasks run in
worker processes: their arguments and results are pickled, module-level state (caches, the
per-venue request pacer) is per worker process, and progress events stay in the worker. Each
task run reports its state and logs to the Prefect API itself, so workers must reach the API
the flow run uses: Prefect's temporary API listens on 127.0.0.1 of the flow run's host, which
a local cluster reaches and a remote one does not; a remote cluster needs a Prefect server
(``PREFECT_API_URL``) and the project installed on its workers.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import dask
from prefect.context import FlowRunContext
from prefect.logging import get_logger
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from prefect_dask.task_runners import DaskTaskRunner

from tradeflow.config import Settings

logger = get_logger(__name__)


class ShippableQuote(quote[Any]):
    """A ``quote`` that survives pickling, so it reaches a Dask worker as the same quote.

    Prefect's annotations are tuple subclasses whose ``__new__`` wraps its argument in a tuple,
    and they do not say how to unpickle themselves, so every pickle round trip wraps the value
    once more: on a worker, ``quote(settings)`` arrives as ``quote(((settings,),))`` (the client
    pickles the call for the scheduler, the scheduler for the worker), and the task receives a
    tuple. Handing pickle the constructor's argument (``__getnewargs__``) fixes that.
    """

    __slots__ = ()

    def __getnewargs__(self) -> tuple[Any]:
        return (self.unwrap(),)


def _quiet_cluster_logs() -> None:
    """Keep the cluster's INFO chatter (scheduler, nanny, comms) out of the flow run's console.

    Warnings and errors still show. Left alone when Dask's own logging config says otherwise.
    """
    if not dask.config.get("distributed.logging", None) and not dask.config.get("logging", None):
        distributed_logger = logging.getLogger("distributed")
        distributed_logger.setLevel(max(logging.WARNING, distributed_logger.getEffectiveLevel()))


class TradeflowDaskTaskRunner(DaskTaskRunner):
    """Prefect's ``DaskTaskRunner``, with what tradeflow's flows need to run on it.

    - Task runs report to the flow run's own Prefect API. prefect-dask ships each task run with
      the flow run's Prefect settings; without ``PREFECT_API_URL`` the flow run talks to a
      temporary API server it started itself, and the setting it ships is empty, so every Dask
      worker would start a temporary API server of its own (seconds each, several servers on
      one database). This runner ships the URL of the API the flow run is using instead. With
      ``PREFECT_API_URL`` set nothing changes.
    - ``quote(...)`` arguments arrive as quotes (see :class:`ShippableQuote`).
    - The local cluster's INFO chatter stays out of the console.
    """

    def submit(
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Any = None,
        dependencies: Any = None,
    ) -> Any:
        """Submit one task run to the cluster."""
        parameters = {
            name: ShippableQuote(value.unwrap()) if isinstance(value, quote) else value
            for name, value in parameters.items()
        }
        context = FlowRunContext.get()
        if PREFECT_API_URL.value() or context is None or context.client is None:
            return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)
        with temporary_settings({PREFECT_API_URL: str(context.client.api_url)}):
            return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)

    def __enter__(self) -> Self:
        _quiet_cluster_logs()
        super().__enter__()
        return self


def task_runner(settings: Settings, max_workers: int) -> TaskRunner[Any]:
    """Return the task runner ``settings.orchestration`` asks for.

    Apply it with ``flow.with_options(task_runner=task_runner(settings, n))``.

    Args:
        settings: The run's settings; ``[orchestration]`` chooses the runner.
        max_workers: Threads of the ``threads`` runner. Under Dask the cluster decides how many
            task runs go at once: ``dask_workers`` x ``dask_threads_per_worker`` on a local
            cluster, whatever a remote cluster's workers have.

    Returns:
        ``ThreadPoolTaskRunner(max_workers)`` for ``threads``. For ``dask``, a Dask task runner
        connected to ``dask_address``, or one that starts a local cluster of worker processes
        for each flow run and stops it when the run ends.
    """
    orchestration = settings.orchestration
    if orchestration.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max_workers)
    if orchestration.dask_address:
        if not PREFECT_API_URL.value():
            logger.warning(
                "task runs on the Dask cluster at %s will report to Prefect's temporary API on "
                "127.0.0.1 of this host; unless its workers run on this host, set PREFECT_API_URL to a "
                "Prefect server they can reach",
                orchestration.dask_address,
            )
        return TradeflowDaskTaskRunner(address=orchestration.dask_address)
    return TradeflowDaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": orchestration.dask_workers,
            "threads_per_worker": orchestration.dask_threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            # No dashboard (it would also need bokeh); the scheduler's small HTTP endpoint
            # (health, metrics) still listens on 127.0.0.1.
            "dashboard_address": None,
        },
    )
