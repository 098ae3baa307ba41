"""The `rompy-tasks` command line, one module per command group (as Prefect's own CLI).

`root` holds the app and `main`; `common` what the groups share; `run` the root's own commands
(run, generate, postprocess, pipeline, validate, schema, plugins); `backends`, `ensemble`,
`forecast`, `server`, `deployments` and `alerts` one group each.
"""
