"""Eager training without importing ``torch._dynamo`` (about 1.5 s of CPU off every worker start).

A built-in task's worker never compiles, but torch.optim pulls the compiler in anyway:

* ``Optimizer.add_param_group`` (called by every optimizer's constructor), ``zero_grad``,
  ``state_dict``, ``load_state_dict`` and each optimizer's functional update (``adam()``,
  ``sgd()``...) are wrapped in ``torch._disable_dynamo``, which imports ``torch._dynamo`` on the
  first call only to build ``torch._dynamo.disable(fn)`` and cache it on ``fn`` as
  ``__dynamo_disable``. Outside ``torch.compile`` that wrapper just calls ``fn``.
* every ``step()`` is wrapped in ``_use_grad_for_differentiable``, which imports
  ``torch._dynamo`` on each call to place ``graph_break()`` markers, no-ops outside a compile,
  around running the step with grad mode set to ``defaults["differentiable"]``.

``keep_dynamo_out()`` gives those wrappers what they would compute: it caches each wrapped
function as its own ``__dynamo_disable`` and replaces the step wrapper of torch's optimizer
classes by one that only sets the grad mode. It is called once, in the worker of a built-in
task, before any optimizer exists; it recognises the wrappers by their code objects, so on a
torch whose internals differ it changes nothing and the worker simply starts slower. User
programs (``trial.command``) are never touched. tests/trial/test_eager.py checks that the
updates are bit-identical to torch's own and that ``torch._dynamo`` stays unimported.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from types import FunctionType, ModuleType
from typing import Any

DYNAMO: str = "torch._dynamo"


def keep_dynamo_out() -> int:
    """Patch torch.optim as described above; returns how many functions were changed (0: none,
    e.g. ``torch._dynamo`` was already imported, so there is nothing left to save)."""
    if DYNAMO in sys.modules:
        return 0
    import torch
    import torch.optim
    from torch.optim import optimizer as optimizer_module

    disabled_code = torch._disable_dynamo(lambda: None).__code__
    use_grad_code = optimizer_module._use_grad_for_differentiable(lambda self: None).__code__
    changed = 0
    for fn in _reachable(_optimizer_modules(torch.optim)):
        raw = getattr(fn, "__wrapped__", None)
        if fn.__code__ is disabled_code and callable(raw) and getattr(raw, "__dynamo_disable", None) is None:
            # Cached: torch._disable_dynamo's wrapper calls it without importing the compiler.
            setattr(raw, "__dynamo_disable", raw)
            changed += 1
    for cls in _optimizer_classes(torch.optim.Optimizer):
        step = cls.__dict__.get("step")
        if isinstance(step, FunctionType) and step.__code__ is use_grad_code and hasattr(step, "__wrapped__"):
            cls.step = _eager_step(step.__wrapped__, torch)
            changed += 1
    return changed


def _eager_step(raw: Callable[..., Any], torch: ModuleType) -> Callable[..., Any]:
    """``_use_grad_for_differentiable`` without its graph breaks (no-ops outside a compile)."""

    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return raw(self, *args, **kwargs)

    return functools.update_wrapper(step, raw)


def _optimizer_modules(optim: ModuleType) -> list[ModuleType]:
    prefix = optim.__name__ + "."
    return [m for name, m in list(sys.modules.items()) if name.startswith(prefix) and isinstance(m, ModuleType)]


def _optimizer_classes(base: type) -> Iterator[type[Any]]:
    seen: set[type] = set()
    todo = [base]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            yield cls
            todo.extend(cls.__subclasses__())


def _reachable(modules: list[ModuleType]) -> Iterator[FunctionType]:
    """Functions of the modules, their classes' methods, and what their closures and
    ``__wrapped__`` chains hold (where torch keeps the wrapped functional updates)."""
    seen: set[int] = set()
    todo: list[Any] = []
    for module in modules:
        for value in vars(module).values():
            todo.append(value)
            if isinstance(value, type) and value.__module__ == module.__name__:
                todo.extend(vars(value).values())
    while todo:
        value = todo.pop()
        if not isinstance(value, FunctionType) or id(value) in seen:
            continue
        seen.add(id(value))
        yield value
        todo.extend(cell.cell_contents for cell in value.__closure__ or () if _filled(cell))
        if hasattr(value, "__wrapped__"):
            todo.append(value.__wrapped__)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises ValueError
    except ValueError:
        return False
    return True
