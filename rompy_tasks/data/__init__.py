"""The data layer: lazy sources, selections and streamed writes (no Prefect).

Forcing cuts, postprocessors and (later) static inputs and rompy's data blocks open data
through here, never by themselves: a source opens lazily with dask chunks aligned to its own
storage chunks, selection happens before anything is read, writes stream chunk by chunk, so
memory follows the chunk size, not the file size or the member count.
"""
