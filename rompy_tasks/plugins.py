"""Plugin discovery through our own entry-point groups, and the typed models built from it.

Groups (they mirror rompy's `rompy.*` groups but stay distinct, so both can be installed):

- `rompy_tasks.config`: model configs (BaseModelConfig subclasses, discriminator `model_type`)
- `rompy_tasks.run`: backend configs (BaseBackendConfig subclasses, discriminator `type`)
- `rompy_tasks.postprocess`: postprocessors; a BasePostprocessorConfig subclass, or any class
  with rompy's `process(model_run, **kwargs) -> dict`, which is wrapped automatically
- `rompy_tasks.pipeline`: pipeline flows; listed here but not imported (they are Prefect
  flows that themselves import this registry)

Built-ins are registered the same way, through our own pyproject. A plugin that fails to
import is reported with a warning naming it; it never stops the others from loading.
"""

import warnings
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model

from rompy_tasks.backends.base import BaseBackendConfig
from rompy_tasks.core.config import BaseModelConfig
from rompy_tasks.core.model_run import ModelRun
from rompy_tasks.pipeline_config import PipelineBase
from rompy_tasks.postprocess.base import BasePostprocessorConfig, ExternalPostprocessorConfig

GROUPS = {
    "config": "rompy_tasks.config",
    "run": "rompy_tasks.run",
    "postprocess": "rompy_tasks.postprocess",
}


@dataclass(frozen=True)
class PluginFailure:
    group: str
    name: str
    target: str
    error: str


@dataclass
class Registry:
    loaded: dict[str, dict[str, Any]]
    targets: dict[str, dict[str, str]]
    failures: list[PluginFailure]


def _check(group: str, name: str, obj: Any) -> Any:
    """Validate a loaded plugin against its group's contract; return what the registry stores."""
    if group == "config":
        if not (isinstance(obj, type) and issubclass(obj, BaseModelConfig)):
            raise TypeError("a model config plugin must subclass rompy_tasks.core.config.BaseModelConfig")
    elif group == "run":
        if not (isinstance(obj, type) and issubclass(obj, BaseBackendConfig)):
            raise TypeError("a backend plugin must subclass rompy_tasks.backends.base.BaseBackendConfig")
    elif group == "postprocess":
        if isinstance(obj, type) and issubclass(obj, BasePostprocessorConfig):
            return obj
        if not callable(getattr(obj, "process", None)):
            raise TypeError("a postprocessor must define process(model_run, **kwargs) -> dict")
        return _wrap_external_postprocessor(name, obj)
    return obj


def _wrap_external_postprocessor(name: str, impl: type) -> type[ExternalPostprocessorConfig]:
    """A config class for a rompy-style postprocessor; its extra options become process() kwargs."""
    cls = create_model(
        f"{name.title().replace('_', '')}Postprocessor",
        __base__=ExternalPostprocessorConfig,
        processor=(Literal[name], name),
    )
    cls.implementation = impl
    cls.__doc__ = (impl.__doc__ or f"Third-party postprocessor {impl.__name__}").strip()
    return cls


@cache
def registry() -> Registry:
    """Load every plugin once per process."""
    loaded: dict[str, dict[str, Any]] = {key: {} for key in GROUPS}
    targets: dict[str, dict[str, str]] = {key: {} for key in GROUPS}
    failures: list[PluginFailure] = []
    for key, group in GROUPS.items():
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            if ep.name in loaded[key]:
                continue  # the same distribution seen twice on sys.path
            targets[key][ep.name] = ep.value
            try:
                loaded[key][ep.name] = _check(key, ep.name, ep.load())
            except Exception as err:  # a broken plugin is reported, never fatal
                failure = PluginFailure(group, ep.name, ep.value, f"{type(err).__name__}: {err}")
                failures.append(failure)
                warnings.warn(
                    f"rompy-tasks plugin {ep.name!r} ({ep.value}) in group {group} failed to load: {failure.error}",
                    stacklevel=2,
                )
    return Registry(loaded, targets, failures)


def available(group_key: str) -> dict[str, Any]:
    return registry().loaded[group_key]


def _union(classes: list[type], discriminator: str) -> Any:
    if not classes:
        raise RuntimeError("no plugins registered: is rompy-tasks installed (pip install -e .)?")
    if len(classes) == 1:
        return classes[0]
    return Annotated[Union[tuple(classes)], Field(discriminator=discriminator)]  # noqa: UP007


@cache
def model_config_union() -> Any:
    return _union(list(available("config").values()), "model_type")


@cache
def backend_union() -> Any:
    return _union(list(available("run").values()), "type")


@cache
def postprocessor_union() -> Any:
    return _union(list(available("postprocess").values()), "processor")


@cache
def model_run_class() -> type[ModelRun]:
    """ModelRun whose `config` is the discriminated union of every registered model."""
    return create_model("ModelRun", __base__=ModelRun, config=(model_config_union(), ...))


@cache
def pipeline_config_class() -> type[PipelineBase]:
    """The pipeline file: PipelineBase with `config`, `backend`, `postprocessor` refined to the plugins."""
    local = available("run").get("local")
    backend_field = Field(default_factory=local) if local else Field(...)

    class PipelineConfig(PipelineBase):
        """A model run, the backend that executes it, and the postprocessors of its outputs."""

        config: model_run_class()  # type: ignore[valid-type]
        backend: backend_union() = backend_field  # type: ignore[valid-type]
        postprocessor: list[postprocessor_union()] = Field(  # type: ignore[valid-type]
            default_factory=list, description="Postprocessors run in order after the model"
        )

    return PipelineConfig
