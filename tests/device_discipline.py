"""Checking, on a machine without a GPU, that code keeps its tensors where a GPU run needs them.

The code under test is given the device `STAND_IN` ("cpu:0"): torch runs it on the CPU, but
`DeviceDiscipline`, a torch function mode, follows every tensor as CUDA would place it. A
tensor made with that device, or moved to it (`.to`, `module.to`, `*_like` of one), is "on
the device"; a tensor from numpy, a factory without a device, or `.cpu()` is "on the host".
A device tensor's `.device` is the stand-in. What CUDA refuses is then an error here too: an
operation between tensors of both (0-dim host tensors excepted, as CUDA allows; copies
allowed), indexing a host tensor with a device index, and `.numpy()` of a device tensor. The mode is per thread, so the tests also make the code
take the branches it takes on a GPU (`take_cuda_branches`: no pools of CPU threads, whole
batches).
"""
from __future__ import annotations

import weakref

import torch
from torch.overrides import TorchFunctionMode

STAND_IN = torch.device("cpu", 0)
DEVICE_OF = torch.Tensor.device.__get__

FACTORIES = {"zeros", "ones", "empty", "full", "arange", "eye", "linspace", "rand",
             "randn", "randint", "randperm", "tensor", "as_tensor", "from_numpy",
             "empty_strided", "scalar_tensor", "sparse_csr_tensor", "sparse_coo_tensor"}
LIKE = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like"}
INDEXING = {"__getitem__", "__setitem__"}
ANY_DEVICE = {"copy_"}                   # cross-device copies are allowed


def _name(func) -> str:
    return getattr(func, "__name__", "")


# The tensors on the device, by id (a weak reference each, so that a dead tensor's id,
# reused, is not taken for it); an attribute on the tensor would change how it pickles.
_ON_DEVICE: dict = {}


def on_device(tensor) -> bool:
    reference = _ON_DEVICE.get(id(tensor))
    return reference is not None and reference() is tensor


def _place(tensor, placed: bool) -> None:
    key = id(tensor)
    if placed:
        _ON_DEVICE[key] = weakref.ref(tensor, lambda _dead: _ON_DEVICE.pop(key, None))
    elif on_device(tensor):
        del _ON_DEVICE[key]


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _is_stand_in(device) -> bool | None:
    """True for the stand-in device, False for the host, None when `device` names none."""
    if isinstance(device, torch.Tensor):
        return on_device(device)
    if isinstance(device, (str, torch.device)):
        try:
            return torch.device(device) == STAND_IN
        except RuntimeError:
            return None
    return None


class DeviceDiscipline(TorchFunctionMode):
    """Follows host and device tensors (module docstring); raises where CUDA would."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == DEVICE_OF:                  # a device tensor says it is on the device
            return STAND_IN if on_device(args[0]) else func(*args, **kwargs)
        name = _name(func)
        if name in ("numpy", "__array__") and args and on_device(args[0]):
            raise RuntimeError(f"{name}() of a tensor on the device (CUDA: call .cpu() first)")
        placed = self._placement(name, args, kwargs)
        result = func(*args, **kwargs)
        given = [tensor for tensor in _tensors((args, kwargs))]
        if any(result is tensor for tensor in given) and on_device(result) != placed:
            # `.to` of a tensor already there returns it: on a GPU it is a new tensor.
            result = result.view_as(result)
        for tensor in _tensors(result):
            _place(tensor, placed)
        return result

    def _placement(self, name, args, kwargs):
        """Whether the result is on the device; raises for operands of both."""
        if name == "cpu":
            return False
        if name == "cuda":
            return True
        wanted = _is_stand_in(kwargs.get("device"))
        if name == "to":
            for value in list(args[1:]) + [kwargs.get("other")]:
                wanted = _is_stand_in(value) if wanted is None else wanted
            return on_device(args[0]) if wanted is None else wanted
        if name in FACTORIES:
            data = args[0] if args else kwargs.get("data")
            if wanted is None and name in ("as_tensor", "tensor") and \
                    isinstance(data, torch.Tensor):
                return on_device(data)
            return bool(wanted)
        if name in LIKE:
            return on_device(args[0]) if wanted is None else wanted
        if name in INDEXING:
            index = list(_tensors(args[1] if len(args) > 1 else ()))
            if not on_device(args[0]) and any(on_device(item) for item in index):
                raise RuntimeError(f"{name}: a host tensor indexed by a device tensor")
            return on_device(args[0])
        operands = [tensor for tensor in _tensors((args, kwargs)) if tensor.dim() > 0]
        places = {on_device(tensor) for tensor in operands}
        if len(places) > 1 and name not in ANY_DEVICE:
            shapes = [(tuple(t.shape), "device" if on_device(t) else "host") for t in operands]
            raise RuntimeError(f"{name}: tensors on the device and on the host: {shapes}")
        if name.endswith("_") and args and isinstance(args[0], torch.Tensor):
            return on_device(args[0])              # in place: the tensor stays where it is
        return any(on_device(tensor) for tensor in _tensors((args, kwargs)))


def take_cuda_branches(monkeypatch):
    """Make the code take its GPU branches while the stand-in device is a CPU one."""
    from smplh2smplx import runtime
    from smplh2smplx.fit import fitter
    from smplh2smplx.stages.sequences import batching
    monkeypatch.setattr(fitter.BodyFitter, "_fit_on_device",
                        lambda self, *args: self._fit(*args))
    monkeypatch.setattr(batching.FitScheduler, "_on_cpu", lambda self: False)
    for module in _importers(runtime.posing_slices):
        monkeypatch.setattr(module, "posing_slices", lambda count, device: [slice(0, count)])


def _importers(function):
    """The loaded smplh2smplx modules that hold `function` under its name."""
    import sys
    return [module for name, module in list(sys.modules.items())
            if name.startswith("smplh2smplx") and
            getattr(module, function.__name__, None) is function]
