"""rompy's own stages for a rompy model, each in a child process of its own:
`python -m rompy_tasks.models.rompy_run generate|run rompy_model_run.json` in the run directory.

A child process because rompy's generation changes the working directory (cookiecutter) and
the root logger while it runs, which would disturb the other members of an ensemble running
in the same process; and because a model's own `run()` must die with a timeout or cancel.
"""

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from rompy.model import ModelRun

    stage, model_run_file = argv
    model_run = ModelRun.model_validate_json(Path(model_run_file).read_text())
    if stage == "generate":
        model_run.generate()
        return 0
    result = model_run.config.run(model_run)
    return 1 if result is False else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
