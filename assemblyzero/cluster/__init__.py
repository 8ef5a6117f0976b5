"""Running a backlog's workers on a Dask distributed cluster (docs/scaling.md).

`connect` finds the cluster (`--cluster=tcp://HOST:8786` or `local:N`); `backend` is the
coordinator's side (one Dask task per attempt, its lines and checkpoint steps streamed
back as events, its files applied here); `task` is what runs on a Dask worker; `store`
keeps every key's slots (`distributed.Semaphore`), rest and budget on the cluster;
`link` is the worker process's line to its task. Only `link` is imported without the
`cluster` extra: a worker process never imports dask.
"""
