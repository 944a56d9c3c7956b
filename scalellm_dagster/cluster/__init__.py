"""Row-parallel work on a Dask cluster, with no Dagster: data moves through Parquet parts on storage every worker
can read, never through the scheduler; workers never write to the warehouse."""
