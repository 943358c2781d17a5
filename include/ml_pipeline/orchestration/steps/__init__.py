"""The step layer: one function per task. Each takes the task's inputs (payload dicts),
its Params and the bits of Airflow context it needs, calls the stage code, and returns
the next payload as a dict. Heavy libraries are imported inside the functions, so DAG
files that import this package stay cheap to parse."""
