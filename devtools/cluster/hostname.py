"""`AIRFLOW__CORE__HOSTNAME_CALLABLE=devtools.cluster.hostname.worker_name`: each process
of the cluster names itself (`ML_PIPELINE_WORKER_NAME`), so the task instances' `hostname`
column tells the two workers apart although they run on one machine."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("ML_PIPELINE_WORKER_NAME") or socket.getfqdn()
